// A sha256 whose running state can be saved and restored, so a chunked upload is hashed as its
// PATCHes land and the commit hashes nothing, even after a restart or on another replica. Node's
// crypto.Hash cannot export its state; the OpenSSL inside Node can (SHA256_CTX), and Node exports
// those symbols to addons, so this links against nothing.
//
// The saved form is Go's crypto/sha256 MarshalBinary (the reference registry writes it to
// `_uploads/<id>/hashstates/sha256/<offset>`): "sha\x03", the eight state words big-endian, the
// pending block padded to 64 bytes, and the byte count as a big-endian uint64 (108 bytes).
//
//   sha256Init(ctx)             ctx: a Buffer of sha256ContextBytes, made a fresh hash
//   sha256Update(ctx, data)     hashes data (a Buffer) into ctx, on the calling thread as crypto does
//   sha256Digest(ctx) -> Buffer the 32-byte digest of what ctx has seen (ctx stays usable)
//   sha256Save(ctx) -> Buffer   the 108-byte saved form
//   sha256Load(ctx, saved) -> n restores ctx from a saved form; the byte count, or -1 if malformed
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>
#include "native.h"

#define SAVED_BYTES 108
static const unsigned char MAGIC[4] = {'s', 'h', 'a', 3};

static SHA256_CTX* Context(napi_env env, napi_value value) {
  bool is_buffer = false;
  void* data = NULL;
  size_t length = 0;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, value, &data, &length) != napi_ok || length != sizeof(SHA256_CTX)) {
    napi_throw_type_error(env, NULL, "expected a sha256 context buffer");
    return NULL;
  }
  return (SHA256_CTX*)data;
}

static size_t Args(napi_env env, napi_callback_info info, napi_value* argv, size_t want) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) napi_throw_type_error(env, NULL, "missing arguments");
  return argc;
}

napi_value Sha256Init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (Args(env, info, argv, 1) < 1) return NULL;
  SHA256_CTX* ctx = Context(env, argv[0]);
  if (ctx != NULL) SHA256_Init(ctx);
  return NULL;
}

napi_value Sha256Update(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (Args(env, info, argv, 2) < 2) return NULL;
  SHA256_CTX* ctx = Context(env, argv[0]);
  if (ctx == NULL) return NULL;
  void* data = NULL;
  size_t length = 0;
  bool is_buffer = false;
  if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "sha256Update(ctx, data): data must be a Buffer");
    return NULL;
  }
  SHA256_Update(ctx, data, length);
  return NULL;
}

napi_value Sha256Digest(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  if (Args(env, info, argv, 1) < 1) return NULL;
  SHA256_CTX* ctx = Context(env, argv[0]);
  if (ctx == NULL) return NULL;
  SHA256_CTX copy = *ctx;
  void* out = NULL;
  napi_create_buffer(env, SHA256_DIGEST_LENGTH, &out, &result);
  SHA256_Final(out, &copy);
  return result;
}

static void PutBE32(unsigned char* p, uint32_t v) {
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

static uint32_t GetBE32(const unsigned char* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

napi_value Sha256Save(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  if (Args(env, info, argv, 1) < 1) return NULL;
  SHA256_CTX* ctx = Context(env, argv[0]);
  if (ctx == NULL) return NULL;
  unsigned char* out = NULL;
  napi_create_buffer(env, SAVED_BYTES, (void**)&out, &result);
  memset(out, 0, SAVED_BYTES);
  memcpy(out, MAGIC, 4);
  for (int i = 0; i < 8; i++) PutBE32(out + 4 + 4 * i, ctx->h[i]);
  // OpenSSL keeps the pending bytes in order at the start of `data`, `num` of them.
  memcpy(out + 36, ctx->data, ctx->num);
  uint64_t bytes = (((uint64_t)ctx->Nh << 32) | ctx->Nl) >> 3;
  PutBE32(out + 100, (uint32_t)(bytes >> 32));
  PutBE32(out + 104, (uint32_t)bytes);
  return result;
}

napi_value Sha256Load(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  if (Args(env, info, argv, 2) < 2) return NULL;
  SHA256_CTX* ctx = Context(env, argv[0]);
  if (ctx == NULL) return NULL;
  const unsigned char* saved = NULL;
  size_t length = 0;
  bool is_buffer = false;
  int64_t bytes = -1;
  if (napi_is_buffer(env, argv[1], &is_buffer) == napi_ok && is_buffer &&
      napi_get_buffer_info(env, argv[1], (void**)&saved, &length) == napi_ok && length == SAVED_BYTES &&
      memcmp(saved, MAGIC, 4) == 0) {
    uint64_t count = (uint64_t)GetBE32(saved + 100) << 32 | GetBE32(saved + 104);
    unsigned int pending = (unsigned int)(count % SHA256_CBLOCK);
    int padded = 1;  // Go writes zeros after the pending bytes; anything else is not its output
    for (size_t i = 36 + pending; i < 100; i++) padded &= saved[i] == 0;
    if (padded && count < ((uint64_t)1 << 61)) {
      SHA256_Init(ctx);
      for (int i = 0; i < 8; i++) ctx->h[i] = GetBE32(saved + 4 + 4 * i);
      ctx->Nl = (SHA_LONG)(count << 3);
      ctx->Nh = (SHA_LONG)(count >> 29);
      memset(ctx->data, 0, sizeof(ctx->data));
      memcpy(ctx->data, saved + 36, pending);
      ctx->num = pending;
      bytes = (int64_t)count;
    }
  }
  napi_create_int64(env, bytes, &result);
  return result;
}

uint32_t Sha256ContextBytes(void) { return sizeof(SHA256_CTX); }
