// The optional addon's entry points (one file each); see native.c.
#ifndef NEAM_NATIVE_H
#define NEAM_NATIVE_H
#include <node_api.h>

napi_value Sendfile(napi_env env, napi_callback_info info);
napi_value WriteFiles(napi_env env, napi_callback_info info);
napi_value TrimMemory(napi_env env, napi_callback_info info);

#endif
