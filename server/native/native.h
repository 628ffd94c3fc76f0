// The optional addon's entry points (one file each); see native.c.
#ifndef NEAM_NATIVE_H
#define NEAM_NATIVE_H
#include <node_api.h>
#include <stdint.h>

napi_value Sendfile(napi_env env, napi_callback_info info);
napi_value WriteFiles(napi_env env, napi_callback_info info);
napi_value AppendFile(napi_env env, napi_callback_info info);
napi_value TrimMemory(napi_env env, napi_callback_info info);
napi_value RemoveTree(napi_env env, napi_callback_info info);
napi_value Sha256Init(napi_env env, napi_callback_info info);
napi_value Sha256Update(napi_env env, napi_callback_info info);
napi_value Sha256Digest(napi_env env, napi_callback_info info);
napi_value Sha256Save(napi_env env, napi_callback_info info);
napi_value Sha256Load(napi_env env, napi_callback_info info);
uint32_t Sha256ContextBytes(void);

// Removes `name` in directory `parent` (AT_FDCWD: a path), a file or a whole tree; 0 (also when
// it is not there) or an errno. `depth` is 0 (remove_tree.c).
int RemoveAt(int parent, const char* name, int depth);

// Calls the JS function `callback` refers to with `args` (from a job's completion, on the event
// loop) and releases the reference.
void CallBack(napi_env env, napi_ref callback, size_t argc, napi_value* args);

// Runs `execute` on libuv's thread pool, then `complete` on the event loop, with `data`.
void QueueJob(napi_env env, const char* name, napi_async_execute_callback execute,
              napi_async_complete_callback complete, void* data, napi_async_work* work);

#endif
