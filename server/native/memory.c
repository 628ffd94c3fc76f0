// Gives memory glibc's malloc holds free back to the system. Streaming a large blob through
// JavaScript buffers leaves the malloc heap fragmented: the freed chunks stay in the process's
// RSS (about 30 MiB after a 2 GiB push) until something at the heap's top is freed. Called after
// large transfers; takes a few milliseconds.
//
// trimMemory()
#include <malloc.h>
#include "native.h"

napi_value TrimMemory(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  malloc_trim(0);
  return NULL;
}
