// Large blob pulls over plain HTTP: copies a blob file to a client socket on libuv's thread pool,
// so neither the event loop nor JavaScript buffers carry the bytes. The registry falls back to
// streams when the addon is absent (no compiler) or the connection is TLS.
//
// sendfile(socketFd, fileFd, offset, length, callback(errorMessage | null, bytesSent))
//
// Despite the name, the copy is pread(2) into one 256 KiB buffer and write(2) to the socket, as
// the reference registry does (with 32 KiB), not sendfile(2). Measured here on a 1 GiB blob, curl
// to /dev/null over loopback, medians of 3-5 alternating runs on the shared 2-core VM (MB/s, and
// CPU centiseconds per GiB of the server / of curl):
//   sendfile(2), 64 MiB per call    884-1378   10-15 / 42-48
//   sendfile(2), 64 KiB per call    1130-1267  23 / 32
//   read/write, 32 KiB              623-1580   17 / 35
//   read/write, 64-256 KiB          1724-2190  13-21 / 22-35
//   read/write, 1 MiB               1763       13 / 32
//   Node stream, 1 MiB chunks       1268-1457  34-49 / 19-22
//   reference registry              1338-1723  21-27 / 31
// sendfile saves the server a copy, but the client then copies out of page-cache pages no CPU
// has touched lately, which costs it more than the server saved; read/write costs the server no
// more CPU (the buffer stays in cache) and the client much less.
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
#include <stdlib.h>
#include <unistd.h>

// A client that takes nothing for this long is given up on.
#define STALL_TIMEOUT_MS 60000
// Bytes read from the file at a time: one buffer per pull in progress, freed when it ends.
#define BUFFER_BYTES (256 * 1024)

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

// Waits until the socket can take more; 0 when it can, else the error that ends the copy.
static int WaitWritable(int fd) {
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int ready = poll(&p, 1, STALL_TIMEOUT_MS);
    if (ready > 0) return (p.revents & (POLLERR | POLLHUP | POLLNVAL)) ? EPIPE : 0;
    if (ready < 0 && errno == EINTR) continue;
    return ready == 0 ? ETIMEDOUT : errno;
  }
}

static void Execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  char* buffer = malloc(BUFFER_BYTES);
  off_t offset = (off_t)job->offset;
  if (buffer == NULL) job->error = ENOMEM;
  while (job->error == 0 && job->remaining > 0) {
    size_t count = job->remaining > BUFFER_BYTES ? BUFFER_BYTES : (size_t)job->remaining;
    ssize_t got = pread(job->file_fd, buffer, count, offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {  // the file is shorter than promised, or unreadable
      job->error = got == 0 ? EIO : errno;
      break;
    }
    offset += got;
    for (ssize_t done = 0; done < got && job->error == 0;) {
      ssize_t n = write(job->socket_fd, buffer + done, (size_t)(got - done));
      if (n > 0) {
        done += n;
        job->remaining -= n;
        job->sent += n;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {  // the socket's buffer is full: wait for the client
        job->error = WaitWritable(job->socket_fd);
      } else {
        job->error = n == 0 ? EPIPE : errno;
      }
    }
  }
  free(buffer);
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
