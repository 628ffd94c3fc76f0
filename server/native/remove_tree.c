// A whole tree removed in one job on libuv's thread pool. Node's fs.rm({recursive}) makes a
// thread-pool round trip per step (lstat, rmdir that fails, opendir, readdir, lstat and unlink per
// entry, rmdir): about a dozen for the upload directory every blob push leaves behind, queued
// with every other request's file work.
//
// removeTree(path, callback(errno), [away]): 0 when the tree is gone (or was never there). With
// `away`, the tree is first renamed there (one atomic step: a crash never leaves it half-removed
// at `path`), then removed; the rename and the removal are one job, not a round trip each.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "native.h"

// Deeper trees are left to Node's fs (the registry's layout is a dozen levels at most).
#define MAX_DEPTH 64

typedef struct {
  char* path;
  char* away;  // where the tree is renamed before its removal, or NULL
  int error;
  napi_ref callback;
  napi_async_work work;
} Job;

// Removes `name` in directory `parent`, whatever it is; 0 or an errno.
int RemoveAt(int parent, const char* name, int depth) {
  if (unlinkat(parent, name, 0) == 0 || errno == ENOENT) return 0;
  if (errno != EISDIR) return errno;
  if (depth >= MAX_DEPTH) return ELOOP;
  for (int pass = 0; pass < 3; pass++) {
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : errno;
    DIR* dir = fdopendir(fd);
    if (dir == NULL) {
      int error = errno;
      close(fd);
      return error;
    }
    int error = 0;
    struct dirent* entry;
    while (error == 0 && (entry = readdir(dir)) != NULL) {
      if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
      error = RemoveAt(dirfd(dir), entry->d_name, depth + 1);
    }
    closedir(dir);
    if (error != 0) return error;
    if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT) return 0;
    // Something appeared meanwhile (or readdir skipped an entry removed under it): go again.
    if (errno != ENOTEMPTY && errno != EEXIST) return errno;
  }
  return ENOTEMPTY;
}

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  if (job->away != NULL) {
    if (rename(job->path, job->away) != 0) {
      job->error = errno == ENOENT ? 0 : errno;
      return;
    }
    job->error = RemoveAt(AT_FDCWD, job->away, 0);
    return;
  }
  job->error = RemoveAt(AT_FDCWD, job->path, 0);
}

static void Complete(napi_env env, napi_status status, void* data) {
  Job* job = data;
  napi_value args[1];
  napi_create_int32(env, status != napi_ok && job->error == 0 ? ECANCELED : job->error, &args[0]);
  CallBack(env, job->callback, 1, args);
  napi_delete_async_work(env, job->work);
  free(job->path);
  free(job->away);
  free(job);
}

napi_value RemoveTree(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type = napi_undefined, away_type = napi_undefined;
  size_t length = 0, away_length = 0;
  if (argc >= 2) napi_typeof(env, argv[1], &type);
  if (argc >= 3) napi_typeof(env, argv[2], &away_type);
  bool away = away_type == napi_string;
  if (argc < 2 || type != napi_function ||
      napi_get_value_string_utf8(env, argv[0], NULL, 0, &length) != napi_ok || length == 0 ||
      (away_type != napi_undefined && !away) ||
      (away && (napi_get_value_string_utf8(env, argv[2], NULL, 0, &away_length) != napi_ok ||
                away_length == 0))) {
    napi_throw_type_error(env, NULL, "removeTree(path, callback, [away]): bad arguments");
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  job->path = malloc(length + 1);
  napi_get_value_string_utf8(env, argv[0], job->path, length + 1, &length);
  if (away) {
    job->away = malloc(away_length + 1);
    napi_get_value_string_utf8(env, argv[2], job->away, away_length + 1, &away_length);
  }
  // An embedded NUL would name another file.
  if (strlen(job->path) != length || (away && strlen(job->away) != away_length)) {
    free(job->path);
    free(job->away);
    free(job);
    napi_throw_type_error(env, NULL, "removeTree(path, callback, [away]): bad arguments");
    return NULL;
  }
  napi_create_reference(env, argv[1], 1, &job->callback);
  QueueJob(env, "neam_remove_tree", Execute, Complete, job, &job->work);
  return NULL;
}
