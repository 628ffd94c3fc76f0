// What Node lacks and the registry needs, as an optional addon (Linux only): large pulls copied
// off the event loop (sendfile.c), small durable writes and appends in one thread-pool job (write_file.c),
// memory given back after large transfers (memory.c), trees removed in one job (remove_tree.c),
// and a sha256 whose state can be saved (sha256.c). Without it the registry does the same work in
// JavaScript, more slowly, keeps more memory, and re-reads a chunked upload resumed after a
// restart.
#include "native.h"

void CallBack(napi_env env, napi_ref callback, size_t argc, napi_value* args) {
  napi_value function, global;
  napi_get_reference_value(env, callback, &function);
  napi_get_global(env, &global);
  napi_call_function(env, global, function, argc, args, NULL);
  napi_delete_reference(env, callback);
}

void QueueJob(napi_env env, const char* name, napi_async_execute_callback execute,
              napi_async_complete_callback complete, void* data, napi_async_work* work) {
  napi_value resource_name;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, execute, complete, data, work);
  napi_queue_async_work(env, *work);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "sendfile", NAPI_AUTO_LENGTH, Sendfile, NULL, &fn);
  napi_set_named_property(env, exports, "sendfile", fn);
  napi_create_function(env, "writeFiles", NAPI_AUTO_LENGTH, WriteFiles, NULL, &fn);
  napi_set_named_property(env, exports, "writeFiles", fn);
  napi_create_function(env, "appendFile", NAPI_AUTO_LENGTH, AppendFile, NULL, &fn);
  napi_set_named_property(env, exports, "appendFile", fn);
  napi_create_function(env, "trimMemory", NAPI_AUTO_LENGTH, TrimMemory, NULL, &fn);
  napi_set_named_property(env, exports, "trimMemory", fn);
  napi_create_function(env, "removeTree", NAPI_AUTO_LENGTH, RemoveTree, NULL, &fn);
  napi_set_named_property(env, exports, "removeTree", fn);
  static const struct {
    const char* name;
    napi_callback function;
  } sha256[] = {{"sha256Init", Sha256Init},
                {"sha256Update", Sha256Update},
                {"sha256Digest", Sha256Digest},
                {"sha256Save", Sha256Save},
                {"sha256Load", Sha256Load}};
  for (size_t i = 0; i < sizeof(sha256) / sizeof(sha256[0]); i++) {
    napi_create_function(env, sha256[i].name, NAPI_AUTO_LENGTH, sha256[i].function, NULL, &fn);
    napi_set_named_property(env, exports, sha256[i].name, fn);
  }
  napi_create_uint32(env, Sha256ContextBytes(), &fn);
  napi_set_named_property(env, exports, "sha256ContextBytes", fn);
  return exports;
}
