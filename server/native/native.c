// What Node lacks and the registry needs, as an optional addon (Linux only): zero-copy pulls
// (sendfile.c), small durable writes in one thread-pool job (write_file.c), and memory given back
// after large transfers (memory.c). Without it the registry does the same work in JavaScript,
// more slowly, and keeps more memory.
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
  napi_create_function(env, "trimMemory", NAPI_AUTO_LENGTH, TrimMemory, NULL, &fn);
  napi_set_named_property(env, exports, "trimMemory", fn);
  return exports;
}
