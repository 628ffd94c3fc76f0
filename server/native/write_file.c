// Small files written, synced and renamed into place in one job on libuv's thread pool. The same
// steps through Node's fs API are a thread-pool round trip each (mkdir, open, write, fsync, close,
// rename), and every round trip waits for a turn of the busy event loop: for the few small files
// of a push (a blob and its link; a manifest, its revision link and its tag) those waits cost far
// more than the disk work itself.
//
// writeFiles(files, callback(errno, syscall, index))
//   files    an array of [dirs, file, content, durable, from, to], [..., source, size] or
//            [path, away]:
//     dirs     directories to create first, in order (a stage directory and any below it), or null
//     file     the file to create (or truncate) and fill with `content` (a Buffer); with a 7th
//              element `source` (content then null), the existing file `source` is renamed to
//              `file` instead (a verified upload becoming a blob), only if it holds `size` bytes
//              (-1: any size; else step "size", ERANGE)
//     durable  fsync the file before the rename
//     from/to  the rename that publishes it (the file itself, or the stage directory around it)
//     [path, away]  a tree to remove in its turn (renamed to `away`, then removed: step "rm");
//                   a missing one is not an error
//
// The files of a batch are written (or moved) first, then synced, then published by their renames
// in order, so each file's data is durable before its rename, as when each was done whole before
// the next. Each file still gets its own fsync; the writeback of all of them is started before
// the first, so on a journalling filesystem (ext4) the first fsync's journal commit covers the
// others' block allocations, and theirs find nothing left to commit: one commit per batch instead
// of one per file.
//
// The first failure stops the job. The callback gets (0, null, files.length) when all are done,
// else the errno, the step that failed and the index of the file it failed on: files before it
// are in place, nothing of the files after it is left (a moved source is moved back). A failure
// before the file's rename removes what was created for it (step "move": its source could not be
// moved in, and is where it was); a failed rename leaves it all in place, so the caller can take
// its slower path with the written file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "native.h"

// Files prepared (and so holding a descriptor) at once; larger batches go in groups.
#define GROUP 16

typedef struct {
  char** dirs;
  uint32_t dir_count;
  char* file;
  char* from;
  char* to;
  char* source;  // moved to `file` instead of writing `data`, or NULL
  int64_t size;  // the size `source` must have, or -1
  bool remove;   // remove the tree `file` (renamed to `to` first) instead of writing
  const char* data;
  size_t length;
  bool durable;
  int fd;  // open between the write and the sync, else -1
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

// Undoes a prepared file that will not be published: closes it, moves a source back or removes
// the written file, removes its directories. Keeps errno.
static void Undo(File* f) {
  if (f->remove) return;
  int error = errno;
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  if (f->source != NULL) {
    rename(f->file, f->source);
  } else {
    unlink(f->file);
  }
  RemoveDirs(f, f->dir_count);
  errno = error;
}

// Creates the file's directories and writes (or moves in) the file, leaving it open for the sync
// and its writeback started; NULL or the failing step (errno set, nothing of the file left).
static const char* Prepare(File* f) {
  f->fd = -1;
  if (f->remove) return NULL;
  if (f->source != NULL) {
    struct stat st;
    if (stat(f->source, &st) != 0) return "move";
    if (f->size >= 0 && st.st_size != f->size) {
      errno = ERANGE;
      return "size";
    }
  }
  for (uint32_t i = 0; i < f->dir_count; i++) {
    if (mkdir(f->dirs[i], 0777) != 0) {
      int error = errno;
      RemoveDirs(f, i);
      errno = error;
      return "mkdir";
    }
  }
  if (f->source != NULL) {
    if (f->durable) {
      f->fd = open(f->source, O_RDONLY | O_CLOEXEC);
      if (f->fd < 0) {
        int error = errno;
        RemoveDirs(f, f->dir_count);
        errno = error;
        return "open";
      }
    }
    if (rename(f->source, f->file) != 0) {
      int error = errno;
      if (f->fd >= 0) close(f->fd);
      f->fd = -1;
      RemoveDirs(f, f->dir_count);
      errno = error;
      return "move";
    }
  } else {
    f->fd = open(f->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0) {
      int error = errno;
      RemoveDirs(f, f->dir_count);
      errno = error;
      return "open";
    }
    size_t done = 0;
    while (done < f->length) {
      ssize_t n = write(f->fd, f->data + done, f->length - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0) errno = EIO;
        Undo(f);
        return "write";
      }
      done += (size_t)n;
    }
  }
  // Start the writeback now: the first fsync of the batch then commits every file's allocation.
  if (f->durable && f->fd >= 0) sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  return NULL;
}

// Syncs (when durable) and closes a prepared file; NULL or the failing step (errno set).
static const char* Finish(File* f) {
  const char* failed = NULL;
  if (f->fd < 0) return NULL;
  if (f->durable && fsync(f->fd) != 0) failed = "fsync";
  int error = errno;
  if (close(f->fd) != 0 && failed == NULL) {
    failed = "close";
    error = errno;
  }
  f->fd = -1;
  errno = error;
  return failed;
}

static void Fail(Job* job, uint32_t index, const char* syscall) {
  job->failed = index;
  job->syscall = syscall;
  job->error = errno;
}

// Files [first, end) of the job: all prepared, then all synced, then all renamed in order. False
// once one failed (the job records where).
static bool DoGroup(Job* job, uint32_t first, uint32_t end) {
  uint32_t prepared = first;
  for (; prepared < end; prepared++) {
    const char* failed = Prepare(&job->files[prepared]);
    if (failed != NULL) {
      Fail(job, prepared, failed);
      break;
    }
  }
  uint32_t synced = first;
  for (; synced < prepared; synced++) {
    File* f = &job->files[synced];
    const char* failed = Finish(f);
    if (failed != NULL) {
      Fail(job, synced, failed);
      // `f` is closed; Undo removes it (with its directories) and the rest of the prepared ones.
      Undo(f);
      for (uint32_t i = synced + 1; i < prepared; i++) Undo(&job->files[i]);
      break;
    }
  }
  for (uint32_t i = first; i < synced; i++) {
    File* f = &job->files[i];
    if (f->remove) {
      int error = 0;
      if (rename(f->file, f->to) != 0) {
        error = errno == ENOENT ? 0 : errno;
      } else {
        error = RemoveAt(AT_FDCWD, f->to, 0);
      }
      if (error == 0) continue;
      errno = error;
      Fail(job, i, "rm");
      for (uint32_t j = i + 1; j < synced; j++) Undo(&job->files[j]);
      return false;
    }
    if (rename(f->from, f->to) != 0) {
      Fail(job, i, "rename");
      // This one stays where it is for the caller; the ones after it are not published.
      for (uint32_t j = i + 1; j < synced; j++) Undo(&job->files[j]);
      return false;
    }
  }
  return synced == end;
}

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  job->failed = job->count;
  for (uint32_t first = 0; first < job->count; first += GROUP) {
    uint32_t end = job->count - first > GROUP ? first + GROUP : job->count;
    if (!DoGroup(job, first, end)) return;
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
    free(f->source);
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

// Reads one [dirs, file, content, durable, from, to] or [..., source] entry; false when it is
// malformed.
static bool ReadFile(napi_env env, napi_value entry, File* f) {
  bool is_array = false, ok = true;
  uint32_t length = 0;
  f->fd = -1;
  f->size = -1;
  napi_is_array(env, entry, &is_array);
  if (!is_array || napi_get_array_length(env, entry, &length) != napi_ok ||
      (length != 2 && length != 6 && length != 8))
    return false;
  napi_value v[8];
  for (uint32_t i = 0; i < length; i++) napi_get_element(env, entry, i, &v[i]);
  if (length == 2) {
    f->remove = true;
    f->file = CopyString(env, v[0], &ok);
    f->to = CopyString(env, v[1], &ok);
    return ok;
  }
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
  if (napi_get_value_bool(env, v[3], &f->durable) != napi_ok) return false;
  if (length == 8) {
    napi_valuetype content_type;
    napi_typeof(env, v[2], &content_type);
    if (content_type != napi_null || napi_get_value_int64(env, v[7], &f->size) != napi_ok) return false;
    f->source = CopyString(env, v[6], &ok);
    return ok;
  }
  void* data = NULL;
  napi_is_buffer(env, v[2], &is_buffer);
  if (!is_buffer || napi_get_buffer_info(env, v[2], &data, &f->length) != napi_ok) return false;
  f->data = data;
  return ok;
}

napi_value WriteFiles(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char* usage =
      "writeFiles([[dirs, file, content, durable, from, to, (source, size)] | [path, away], ...], "
      "callback): bad arguments";
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

// appendFile(path, content, expected, durable, callback(errno, syscall, size)): appends `content`
// (a Buffer) to the existing file `path` (an upload's data) in one thread-pool job, synced
// (fdatasync) before the callback when `durable`, but only when the file holds exactly `expected`
// bytes: the callback then gets (0, null, expected). Otherwise nothing is written and it gets
// (0, null, the file's size), for the caller to take its general path. A failed write is cut back
// to `expected` bytes, so a retry finds the file as it was.
typedef struct {
  char* path;
  const char* data;
  size_t length;
  int64_t expected;
  bool durable;
  int64_t size;
  int error;
  const char* syscall;
  napi_ref buffer;
  napi_ref callback;
  napi_async_work work;
} Append;

static void AppendExecute(napi_env env, void* data) {
  (void)env;
  Append* job = data;
  int fd = open(job->path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    job->error = errno;
    job->syscall = "open";
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    job->error = errno;
    job->syscall = "fstat";
    close(fd);
    return;
  }
  job->size = st.st_size;
  if (st.st_size != job->expected) {
    close(fd);
    return;
  }
  size_t done = 0;
  while (done < job->length) {
    ssize_t n = write(fd, job->data + done, job->length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      job->error = n == 0 ? EIO : errno;
      job->syscall = "write";
      if (ftruncate(fd, job->expected) != 0) {
        // Left longer than acknowledged: the next request sees the size and answers accordingly.
      }
      close(fd);
      return;
    }
    done += (size_t)n;
  }
  if (job->durable && fdatasync(fd) != 0) {
    job->error = errno;
    job->syscall = "fdatasync";
  }
  if (close(fd) != 0 && job->error == 0) {
    job->error = errno;
    job->syscall = "close";
  }
}

static void AppendComplete(napi_env env, napi_status status, void* data) {
  Append* job = data;
  napi_value args[3];
  if (status != napi_ok && job->error == 0) {
    job->error = ECANCELED;
    job->syscall = "appendFile";
  }
  napi_create_int32(env, job->error, &args[0]);
  if (job->syscall != NULL) {
    napi_create_string_utf8(env, job->syscall, NAPI_AUTO_LENGTH, &args[1]);
  } else {
    napi_get_null(env, &args[1]);
  }
  napi_create_double(env, (double)job->size, &args[2]);
  CallBack(env, job->callback, 3, args);
  napi_delete_reference(env, job->buffer);
  napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

napi_value AppendFile(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const char* usage = "appendFile(path, content, expected, durable, callback): bad arguments";
  bool ok = argc == 5, is_buffer = false;
  napi_valuetype callback_type = napi_undefined;
  Append* job = calloc(1, sizeof(Append));
  void* buffer = NULL;
  if (ok) {
    job->path = CopyString(env, argv[0], &ok);
    napi_is_buffer(env, argv[1], &is_buffer);
    napi_typeof(env, argv[4], &callback_type);
  }
  if (!ok || !is_buffer || callback_type != napi_function ||
      napi_get_buffer_info(env, argv[1], &buffer, &job->length) != napi_ok ||
      napi_get_value_int64(env, argv[2], &job->expected) != napi_ok || job->expected < 0 ||
      napi_get_value_bool(env, argv[3], &job->durable) != napi_ok) {
    free(job->path);
    free(job);
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  job->data = buffer;
  job->size = job->expected;
  napi_create_reference(env, argv[1], 1, &job->buffer);
  napi_create_reference(env, argv[4], 1, &job->callback);
  QueueJob(env, "neam_append_file", AppendExecute, AppendComplete, job, &job->work);
  return NULL;
}
