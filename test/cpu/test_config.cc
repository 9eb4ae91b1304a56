// llConfig_t checking: every rejection names the field.
#include <cstring>
#include <string>

#include "config.h"
#include "harness.h"
#include "llep.h"
#include "buffer_layout.h"

namespace {

llConfig_t valid() {
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = 128;
  c.hidden = 7168;
  c.numExperts = 256;
  return c;
}

void expectRejected(const llConfig_t& c, int nranks, const char* needle) {
  llCommConfig out;
  EXPECT_EQ(llConfigResolve(&c, nranks, &out), llInvalidArgument);
  const char* msg = llGetLastError(nullptr);
  EXPECT_MSG(strstr(msg, needle) != nullptr, "message '%s' does not name '%s'", msg, needle);
}

}  // namespace

LL_TEST(uninitialised_config_rejected) {
  llConfig_t zero;
  memset(&zero, 0, sizeof(zero));
  expectRejected(zero, 1, "config.magic");
  llConfig_t garbage;
  memset(&garbage, 0xab, sizeof(garbage));
  expectRejected(garbage, 1, "LL_CONFIG_INITIALIZER");
  llCommConfig out;
  EXPECT_EQ(llConfigResolve(nullptr, 1, &out), llInvalidArgument);
}

LL_TEST(wrong_size_rejected) {
  llConfig_t c = valid();
  c.size = 8;
  expectRejected(c, 1, "config.size is 8");
  c.size = sizeof(llConfig_t) + 64;
  expectRejected(c, 1, "newer llep.h");
}

LL_TEST(wrong_magic_rejected) {
  llConfig_t c = valid();
  c.magic = 0xcafebeef;  // NCCL's, a plausible mix-up
  expectRejected(c, 1, "config.magic is 0xcafebeef");
}

LL_TEST(wrong_version_rejected) {
  llConfig_t c = valid();
  c.version = LLEP_VERSION + 100;
  expectRejected(c, 1, "config.version");
  c.version = 0;
  expectRejected(c, 1, "config.version");
}

LL_TEST(missing_shape_fields_named) {
  llConfig_t c = valid();
  c.maxTokensPerRank = LL_CONFIG_UNDEF_INT;
  expectRejected(c, 1, "config.maxTokensPerRank is not set");
  c = valid();
  c.hidden = LL_CONFIG_UNDEF_INT;
  expectRejected(c, 1, "config.hidden is not set");
  c = valid();
  c.numExperts = LL_CONFIG_UNDEF_INT;
  expectRejected(c, 1, "config.numExperts is not set");
}

LL_TEST(bad_values_named) {
  llConfig_t c = valid();
  c.maxTokensPerRank = -1;
  expectRejected(c, 1, "config.maxTokensPerRank = -1");
  c = valid();
  c.hidden = 7000;
  expectRejected(c, 1, "config.hidden = 7000");
  c = valid();
  c.numExperts = 10;
  expectRejected(c, 4, "config.numExperts = 10 is not a multiple of the rank count 4");
  c = valid();
  c.maxTopk = 17;
  expectRejected(c, 1, "config.maxTopk = 17");
  c = valid();
  c.transports = 0x8;
  expectRejected(c, 1, "config.transports");
  c = valid();
  c.timeoutMs = 0;
  expectRejected(c, 1, "config.timeoutMs");
  c = valid();
  c.numSms = -3;
  expectRejected(c, 1, "config.numSms");
}

LL_TEST(defaults_filled) {
  llConfig_t c = valid();
  llCommConfig out;
  EXPECT_OK(llConfigResolve(&c, 8, &out));
  EXPECT_EQ(out.maxTokensPerRank, 128);
  EXPECT_EQ(out.hidden, 7168);
  EXPECT_EQ(out.numExperts, 256);
  EXPECT_EQ(out.maxTopk, LL_MAX_TOPK);
  EXPECT_EQ(out.transports, LL_TRANSPORT_ALL);
  EXPECT_EQ(out.timeoutMs, 60000);
  EXPECT_EQ(out.numSms, 0);
  size_t hint = 0;
  EXPECT_OK(llGetBufferSizeHint(128, 7168, 8, 256, &hint));
  EXPECT_EQ(out.bufferBytes, hint);
  // A smaller top-k needs no more than the hint.
  c.maxTopk = 8;
  EXPECT_OK(llConfigResolve(&c, 8, &out));
  EXPECT(out.bufferBytes <= hint);
}

LL_TEST(buffer_too_small) {
  llConfig_t c = valid();
  size_t hint = 0;
  EXPECT_OK(llGetBufferSizeHint(128, 7168, 2, 256, &hint));
  c.bufferBytes = hint / 2;
  expectRejected(c, 2, "config.bufferBytes");
  c.bufferBytes = hint * 2;  // larger is fine
  llCommConfig out;
  EXPECT_OK(llConfigResolve(&c, 2, &out));
  EXPECT_EQ(out.bufferBytes, hint * 2);
}

LL_TEST_MAIN()
