// What Node lacks and the registry needs, as an optional addon (Linux only): zero-copy pulls
// (sendfile.c), small durable writes in one thread-pool job (write_file.c), and memory given back
// after large transfers (memory.c). Without it the registry does the same work in JavaScript,
// more slowly, and keeps more memory.
#include "native.h"

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
