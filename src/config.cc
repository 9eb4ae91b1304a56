#include "config.h"

#include <strings.h>

#include <cstddef>

#include "buffer_layout.h"
#include "checks.h"
#include "param.h"

int llTransportsFromEnv() {
  const char* t = llParamTransport();
  if (strcasecmp(t, "auto") == 0 || *t == '\0') return LL_TRANSPORT_ALL;
  if (strcasecmp(t, "p2p") == 0) return LL_TRANSPORT_P2P;
  if (strcasecmp(t, "ibgda") == 0) return LL_TRANSPORT_IBGDA;
  LL_WARN("LLEP_TRANSPORT='%s' is not auto, p2p or ibgda; using auto", t);
  return LL_TRANSPORT_ALL;
}

namespace {

// The caller's struct must be a whole llConfig_v1: the first version has no shorter layout to adapt.
constexpr size_t kConfigV1Bytes = offsetof(llConfig_t, bufferBytes) + sizeof(size_t);

llResult_t checkHeader(const llConfig_t* c) {
  LL_REQUIRE(c != nullptr, llInvalidArgument, "config is NULL: pass a config filled from LL_CONFIG_INITIALIZER");
  LL_REQUIRE(c->magic == LL_CONFIG_MAGIC, llInvalidArgument,
             "config.magic is 0x%x, not LL_CONFIG_MAGIC: initialise the config with LL_CONFIG_INITIALIZER",
             c->magic);
  LL_REQUIRE(c->size >= kConfigV1Bytes, llInvalidArgument,
             "config.size is %zu, smaller than llConfig_t v1 (%zu bytes): initialise with LL_CONFIG_INITIALIZER",
             c->size, kConfigV1Bytes);
  LL_REQUIRE(c->size <= sizeof(llConfig_t), llInvalidArgument,
             "config.size is %zu, larger than this library's llConfig_t (%zu bytes): built against a newer llep.h?",
             c->size, sizeof(llConfig_t));
  LL_REQUIRE(c->version >= (unsigned)LLEP_VERSION_CODE(0, 1, 0) && c->version <= (unsigned)LLEP_VERSION,
             llInvalidArgument, "config.version is %u, not a version this library (%d) accepts", c->version,
             LLEP_VERSION);
  return llSuccess;
}

llResult_t requireSet(int value, const char* field) {
  LL_REQUIRE(value != LL_CONFIG_UNDEF_INT, llInvalidArgument, "config.%s is not set (it is required)", field);
  return llSuccess;
}

int orDefault(int value, long long deflt) { return value == LL_CONFIG_UNDEF_INT ? (int)deflt : value; }

}  // namespace

llResult_t llConfigResolve(const llConfig_t* user, int nranks, llCommConfig* out) {
  LLCHECK(checkHeader(user));
  LLCHECK(requireSet(user->maxTokensPerRank, "maxTokensPerRank"));
  LLCHECK(requireSet(user->hidden, "hidden"));
  LLCHECK(requireSet(user->numExperts, "numExperts"));
  llCommConfig c;
  c.maxTokensPerRank = user->maxTokensPerRank;
  c.hidden = user->hidden;
  c.numExperts = user->numExperts;
  c.maxTopk = orDefault(user->maxTopk, LL_MAX_TOPK);
  c.transports = user->transports == LL_CONFIG_UNDEF_INT ? llTransportsFromEnv() : user->transports;
  c.timeoutMs = orDefault(user->timeoutMs, llParamTimeoutMs());
  c.numSms = orDefault(user->numSms, llParamNumSms());
  c.bufferBytes = user->bufferBytes;

  LL_REQUIRE(c.maxTokensPerRank > 0 && c.maxTokensPerRank <= kLlMaxTokensPerRank, llInvalidArgument,
             "config.maxTokensPerRank = %d is outside 1..%d", c.maxTokensPerRank, kLlMaxTokensPerRank);
  LL_REQUIRE(c.hidden > 0 && c.hidden % 128 == 0 && c.hidden <= kLlMaxHidden, llInvalidArgument,
             "config.hidden = %d is not a positive multiple of 128 up to %d", c.hidden, kLlMaxHidden);
  LL_REQUIRE(c.numExperts > 0 && c.numExperts <= kLlMaxExperts, llInvalidArgument,
             "config.numExperts = %d is outside 1..%d", c.numExperts, kLlMaxExperts);
  LL_REQUIRE(nranks > 0 && c.numExperts % nranks == 0, llInvalidArgument,
             "config.numExperts = %d is not a multiple of the rank count %d", c.numExperts, nranks);
  LL_REQUIRE(c.maxTopk >= 1 && c.maxTopk <= LL_MAX_TOPK, llInvalidArgument,
             "config.maxTopk = %d is outside 1..%d", c.maxTopk, LL_MAX_TOPK);
  LL_REQUIRE(c.transports != 0 && (c.transports & ~LL_TRANSPORT_ALL) == 0, llInvalidArgument,
             "config.transports = 0x%x is not a non-empty mask of LL_TRANSPORT_* bits", c.transports);
  LL_REQUIRE(c.timeoutMs > 0, llInvalidArgument, "config.timeoutMs = %d must be > 0", c.timeoutMs);
  LL_REQUIRE(c.numSms >= 0, llInvalidArgument, "config.numSms = %d must be >= 0", c.numSms);

  size_t needed = llBufferLayoutFor(c.maxTokensPerRank, c.hidden, nranks, c.numExperts).totalBytes;
  if (c.bufferBytes == 0) c.bufferBytes = needed;
  LL_REQUIRE(c.bufferBytes >= needed, llInvalidArgument,
             "config.bufferBytes = %zu is smaller than the %zu bytes this shape needs (llGetBufferSizeHint)",
             c.bufferBytes, needed);
  *out = c;
  return llSuccess;
}
