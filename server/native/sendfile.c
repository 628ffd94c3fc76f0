// Zero-copy blob serving for plain-HTTP pulls: sendfile(2) from a blob file to a client socket,
// on libuv's thread pool so the event loop never blocks. The registry falls back to streams when
// the addon is absent (no compiler) or the connection is TLS.
//
// sendfile(socketFd, fileFd, offset, length, callback(errorMessage | null, bytesSent))
//
// The socket descriptor is dup'ed before the call returns: if the client goes away and Node
// closes its descriptor meanwhile, the number cannot be reused for another file or connection
// while the copy still writes to it.
#define _GNU_SOURCE
#include <errno.h>
#include "native.h"
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/sendfile.h>
#include <stdlib.h>
#include <unistd.h>

// A client that takes nothing for this long is given up on.
#define STALL_TIMEOUT_MS 60000
// One sendfile call moves at most this much, so a stall is noticed between calls.
#define CHUNK (64 * 1024 * 1024)

typedef struct {
  int socket_fd;
  int file_fd;
  int64_t offset;
  int64_t remaining;
  int64_t sent;
  int error;
  napi_ref callback;
  napi_async_work work;
} Job;

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  off_t offset = (off_t)job->offset;
  while (job->remaining > 0) {
    size_t count = job->remaining > CHUNK ? CHUNK : (size_t)job->remaining;
    ssize_t n = sendfile(job->socket_fd, job->file_fd, &offset, count);
    if (n > 0) {
      job->remaining -= n;
      job->sent += n;
      continue;
    }
    if (n == 0) {  // the file is shorter than promised
      job->error = EIO;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {  // the socket's buffer is full: wait until the client reads
      struct pollfd p = {.fd = job->socket_fd, .events = POLLOUT};
      int ready = poll(&p, 1, STALL_TIMEOUT_MS);
      if (ready > 0 && !(p.revents & (POLLERR | POLLHUP | POLLNVAL))) continue;
      if (ready < 0 && errno == EINTR) continue;
      job->error = ready == 0 ? ETIMEDOUT : EPIPE;
      break;
    }
    job->error = errno;
    break;
  }
  close(job->socket_fd);
}

static void Complete(napi_env env, napi_status status, void* data) {
  Job* job = data;
  napi_value args[2];
  if (status != napi_ok && job->error == 0) job->error = ECANCELED;
  if (job->error != 0) {
    napi_create_string_utf8(env, strerror(job->error), NAPI_AUTO_LENGTH, &args[0]);
  } else {
    napi_get_null(env, &args[0]);
  }
  napi_create_int64(env, job->sent, &args[1]);
  CallBack(env, job->callback, 2, args);
  napi_delete_async_work(env, job->work);
  free(job);
}

napi_value Sendfile(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 5) {
    napi_throw_type_error(env, NULL, "sendfile(socketFd, fileFd, offset, length, callback)");
    return NULL;
  }
  int32_t socket_fd, file_fd;
  int64_t offset, length;
  napi_valuetype type;
  napi_typeof(env, argv[4], &type);
  if (napi_get_value_int32(env, argv[0], &socket_fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &file_fd) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[3], &length) != napi_ok || type != napi_function || socket_fd < 0 ||
      file_fd < 0 || offset < 0 || length < 0) {
    napi_throw_type_error(env, NULL, "sendfile(socketFd, fileFd, offset, length, callback): bad arguments");
    return NULL;
  }
  int dup_fd = dup(socket_fd);
  if (dup_fd < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  job->socket_fd = dup_fd;
  job->file_fd = file_fd;
  job->offset = offset;
  job->remaining = length;
  napi_create_reference(env, argv[4], 1, &job->callback);
  QueueJob(env, "neam_sendfile", Execute, Complete, job, &job->work);
  return NULL;
}
