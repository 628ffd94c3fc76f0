// What Node lacks and the registry needs, as an optional addon (Linux only): zero-copy pulls
// (sendfile.c) and small durable writes in one thread-pool job (write_file.c). Without it the
// registry does the same work in JavaScript, more slowly.
#include "native.h"

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "sendfile", NAPI_AUTO_LENGTH, Sendfile, NULL, &fn);
  napi_set_named_property(env, exports, "sendfile", fn);
  napi_create_function(env, "writeFiles", NAPI_AUTO_LENGTH, WriteFiles, NULL, &fn);
  napi_set_named_property(env, exports, "writeFiles", fn);
  return exports;
}
