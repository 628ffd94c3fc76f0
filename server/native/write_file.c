// A small file written, synced and renamed into place in one job on libuv's thread pool. The same
// steps through Node's fs API are a thread-pool round trip each (mkdir, open, write, fsync,
// close, rename); for the many small files of a push (blobs, links, tags) those trips and their
// thread wake-ups cost more than the disk work itself.
//
// writeFile(dirs, file, content, durable, from, to, callback(errno, syscall))
//   dirs     directories to create first, in order (a stage directory and any below it), or null
//   file     the file to create (or truncate) and fill with `content` (a Buffer)
//   durable  fsync the file before the rename
//   from/to  the rename that publishes it (the file itself, or the stage directory around it)
//
// The callback gets (0, null) on success, else the errno and the step that failed. A failure
// before the rename removes what this call created; a failed rename leaves everything in place so
// the caller can take its slower path with the written file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
  int error;
  const char* syscall;
  napi_ref content;
  napi_ref callback;
  napi_async_work work;
} Job;

static void Fail(Job* job, const char* syscall) {
  job->error = errno;
  job->syscall = syscall;
}

// Removes the first `count` directories of the job, deepest first.
static void RemoveDirs(Job* job, uint32_t count) {
  while (count > 0) rmdir(job->dirs[--count]);
}

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  for (uint32_t i = 0; i < job->dir_count; i++) {
    if (mkdir(job->dirs[i], 0777) != 0) {
      Fail(job, "mkdir");
      RemoveDirs(job, i);
      return;
    }
  }
  int fd = open(job->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    Fail(job, "open");
  } else {
    size_t done = 0;
    while (done < job->length) {
      ssize_t n = write(fd, job->data + done, job->length - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = EIO;
        Fail(job, "write");
        break;
      }
      done += (size_t)n;
    }
    if (job->error == 0 && job->durable && fsync(fd) != 0) Fail(job, "fsync");
    if (close(fd) != 0 && job->error == 0) Fail(job, "close");
    if (job->error == 0) {
      if (rename(job->from, job->to) != 0) Fail(job, "rename");
      return;
    }
    unlink(job->file);
  }
  RemoveDirs(job, job->dir_count);
}

static void FreeJob(Job* job) {
  for (uint32_t i = 0; i < job->dir_count; i++) free(job->dirs[i]);
  free(job->dirs);
  free(job->file);
  free(job->from);
  free(job->to);
  free(job);
}

static void Complete(napi_env env, napi_status status, void* data) {
  Job* job = data;
  napi_value callback, global, args[2];
  napi_get_reference_value(env, job->callback, &callback);
  napi_get_global(env, &global);
  if (status != napi_ok && job->error == 0) {
    job->error = ECANCELED;
    job->syscall = "writeFile";
  }
  napi_create_int32(env, job->error, &args[0]);
  if (job->syscall != NULL) {
    napi_create_string_utf8(env, job->syscall, NAPI_AUTO_LENGTH, &args[1]);
  } else {
    napi_get_null(env, &args[1]);
  }
  napi_call_function(env, global, callback, 2, args, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_reference(env, job->content);
  napi_delete_async_work(env, job->work);
  FreeJob(job);
}

// A copy of a JS string argument, or NULL (with `*ok` cleared) when it is not a string.
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

napi_value WriteFile(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char* usage = "writeFile(dirs, file, content, durable, from, to, callback): bad arguments";
  if (argc != 7) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  napi_valuetype dirs_type, callback_type;
  napi_typeof(env, argv[0], &dirs_type);
  napi_typeof(env, argv[6], &callback_type);
  bool is_buffer = false, is_array = false, durable = false, ok = true;
  napi_is_buffer(env, argv[2], &is_buffer);
  napi_is_array(env, argv[0], &is_array);
  void* data = NULL;
  size_t length = 0;
  if (!is_buffer || napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok ||
      napi_get_value_bool(env, argv[3], &durable) != napi_ok || callback_type != napi_function ||
      (dirs_type != napi_null && !is_array)) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  if (is_array) {
    napi_get_array_length(env, argv[0], &job->dir_count);
    job->dirs = calloc(job->dir_count > 0 ? job->dir_count : 1, sizeof(char*));
    for (uint32_t i = 0; i < job->dir_count; i++) {
      napi_value dir;
      napi_get_element(env, argv[0], i, &dir);
      job->dirs[i] = CopyString(env, dir, &ok);
    }
  }
  job->file = CopyString(env, argv[1], &ok);
  job->from = CopyString(env, argv[4], &ok);
  job->to = CopyString(env, argv[5], &ok);
  if (!ok) {
    FreeJob(job);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  job->data = data;
  job->length = length;
  job->durable = durable;
  // The buffer must outlive the job: a reference keeps it (and its memory) alive until Complete.
  napi_create_reference(env, argv[2], 1, &job->content);
  napi_create_reference(env, argv[6], 1, &job->callback);
  napi_value name;
  napi_create_string_utf8(env, "neam_write_file", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, Execute, Complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return NULL;
}
