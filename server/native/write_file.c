// Small files written, synced and renamed into place, in order, in one job on libuv's thread
// pool. The same steps through Node's fs API are a thread-pool round trip each (mkdir, open,
// write, fsync, close, rename); for the many small files of a push (a blob and its link; a
// manifest, its revision link and its tag) those trips and their thread wake-ups cost more than
// the disk work itself.
//
// writeFiles(files, callback(errno, syscall, index))
//   files    an array of [dirs, file, content, durable, from, to]:
//     dirs     directories to create first, in order (a stage directory and any below it), or null
//     file     the file to create (or truncate) and fill with `content` (a Buffer)
//     durable  fsync the file before the rename
//     from/to  the rename that publishes it (the file itself, or the stage directory around it)
//
// Files are done one after the other; the first failure stops the job. The callback gets
// (0, null, files.length) when all are done, else the errno, the step that failed and the index
// of the file it failed on: files before it are in place, files after it were not touched. A
// failure before the rename removes what was created for that file; a failed rename leaves it
// all in place, so the caller can take its slower path with the written file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "native.h"

typedef struct {
  char** dirs;
  uint32_t dir_count;
  char* file;
  char* from;
  char* to;
  const char* data;
  size_t length;
  bool durable;
} File;

typedef struct {
  File* files;
  uint32_t count;
  uint32_t failed;  // index of the file that failed; `count` when none did
  int error;
  const char* syscall;
  napi_ref array;  // keeps the content buffers alive until Complete
  napi_ref callback;
  napi_async_work work;
} Job;

// Removes the first `count` directories made for `file`, deepest first.
static void RemoveDirs(File* file, uint32_t count) {
  while (count > 0) rmdir(file->dirs[--count]);
}

// Writes one file; 0 or the failing step (errno set).
static const char* WriteOne(File* f) {
  for (uint32_t i = 0; i < f->dir_count; i++) {
    if (mkdir(f->dirs[i], 0777) != 0) {
      int error = errno;
      RemoveDirs(f, i);
      errno = error;
      return "mkdir";
    }
  }
  const char* failed = NULL;
  int fd = open(f->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    failed = "open";
  } else {
    size_t done = 0;
    while (done < f->length) {
      ssize_t n = write(fd, f->data + done, f->length - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = EIO;
        failed = "write";
        break;
      }
      done += (size_t)n;
    }
    if (failed == NULL && f->durable && fsync(fd) != 0) failed = "fsync";
    int error = errno;
    if (close(fd) != 0 && failed == NULL) {
      failed = "close";
      error = errno;
    }
    if (failed == NULL) return rename(f->from, f->to) == 0 ? NULL : "rename";
    unlink(f->file);
    errno = error;
  }
  int error = errno;
  RemoveDirs(f, f->dir_count);
  errno = error;
  return failed;
}

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  for (job->failed = 0; job->failed < job->count; job->failed++) {
    job->syscall = WriteOne(&job->files[job->failed]);
    if (job->syscall != NULL) {
      job->error = errno;
      return;
    }
  }
}

static void FreeJob(Job* job) {
  for (uint32_t i = 0; i < job->count; i++) {
    File* f = &job->files[i];
    for (uint32_t d = 0; d < f->dir_count; d++) free(f->dirs[d]);
    free(f->dirs);
    free(f->file);
    free(f->from);
    free(f->to);
  }
  free(job->files);
  free(job);
}

static void Complete(napi_env env, napi_status status, void* data) {
  Job* job = data;
  napi_value args[3];
  if (status != napi_ok && job->error == 0) {
    job->error = ECANCELED;
    job->syscall = "writeFiles";
    job->failed = 0;
  }
  napi_create_int32(env, job->error, &args[0]);
  if (job->syscall != NULL) {
    napi_create_string_utf8(env, job->syscall, NAPI_AUTO_LENGTH, &args[1]);
  } else {
    napi_get_null(env, &args[1]);
  }
  napi_create_uint32(env, job->failed, &args[2]);
  CallBack(env, job->callback, 3, args);
  napi_delete_reference(env, job->array);
  napi_delete_async_work(env, job->work);
  FreeJob(job);
}

// A copy of a JS string, or NULL (with `*ok` cleared) when it is not one.
static char* CopyString(napi_env env, napi_value value, bool* ok) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    *ok = false;
    return NULL;
  }
  char* copy = malloc(length + 1);
  napi_get_value_string_utf8(env, value, copy, length + 1, &length);
  if (strlen(copy) != length) *ok = false;  // an embedded NUL would name another file
  return copy;
}

// Reads one [dirs, file, content, durable, from, to] entry; false when it is malformed.
static bool ReadFile(napi_env env, napi_value entry, File* f) {
  bool is_array = false, ok = true;
  uint32_t length = 0;
  napi_is_array(env, entry, &is_array);
  if (!is_array || napi_get_array_length(env, entry, &length) != napi_ok || length != 6) return false;
  napi_value v[6];
  for (uint32_t i = 0; i < 6; i++) napi_get_element(env, entry, i, &v[i]);
  napi_valuetype dirs_type;
  napi_typeof(env, v[0], &dirs_type);
  bool dirs_array = false, is_buffer = false;
  napi_is_array(env, v[0], &dirs_array);
  if (dirs_array) {
    napi_get_array_length(env, v[0], &f->dir_count);
    f->dirs = calloc(f->dir_count > 0 ? f->dir_count : 1, sizeof(char*));
    for (uint32_t i = 0; i < f->dir_count; i++) {
      napi_value dir;
      napi_get_element(env, v[0], i, &dir);
      f->dirs[i] = CopyString(env, dir, &ok);
    }
  } else if (dirs_type != napi_null) {
    return false;
  }
  f->file = CopyString(env, v[1], &ok);
  f->from = CopyString(env, v[4], &ok);
  f->to = CopyString(env, v[5], &ok);
  void* data = NULL;
  napi_is_buffer(env, v[2], &is_buffer);
  if (!is_buffer || napi_get_buffer_info(env, v[2], &data, &f->length) != napi_ok ||
      napi_get_value_bool(env, v[3], &f->durable) != napi_ok) {
    return false;
  }
  f->data = data;
  return ok;
}

napi_value WriteFiles(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char* usage = "writeFiles([[dirs, file, content, durable, from, to], ...], callback): bad arguments";
  napi_valuetype callback_type = napi_undefined;
  bool is_array = false;
  if (argc == 2) {
    napi_is_array(env, argv[0], &is_array);
    napi_typeof(env, argv[1], &callback_type);
  }
  if (!is_array || callback_type != napi_function) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  napi_get_array_length(env, argv[0], &job->count);
  job->files = calloc(job->count > 0 ? job->count : 1, sizeof(File));
  for (uint32_t i = 0; i < job->count; i++) {
    napi_value entry;
    napi_get_element(env, argv[0], i, &entry);
    if (!ReadFile(env, entry, &job->files[i])) {
      FreeJob(job);
      napi_throw_type_error(env, NULL, usage);
      return NULL;
    }
  }
  // The array holds the content buffers: a reference keeps them (and their memory) alive.
  napi_create_reference(env, argv[0], 1, &job->array);
  napi_create_reference(env, argv[1], 1, &job->callback);
  QueueJob(env, "neam_write_files", Execute, Complete, job, &job->work);
  return NULL;
}
