// llCommInitFromNccl when NCCL cannot be had: an error and a message, never a crash.
#include <cstdlib>
#include <cstring>

#include "harness.h"
#include "llep.h"

namespace {
llConfig_t valid() {
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = 16;
  c.hidden = 256;
  c.numExperts = 4;
  return c;
}
}  // namespace

LL_TEST(no_nccl_library_fails_cleanly) {
  setenv("LLEP_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  llConfig_t c = valid();
  llComm_t comm = (llComm_t)0x1;
  // A non-NULL handle that must never be dereferenced: NCCL is missing, so nothing may call into it.
  llResult_t r = llCommInitFromNccl(&comm, (ncclComm_t)0x10, &c);
  EXPECT_EQ(r, llSystemError);
  EXPECT(comm == nullptr);
  const char* msg = llGetLastError(nullptr);
  EXPECT_MSG(strstr(msg, "NCCL") != nullptr, "message: %s", msg);
}

LL_TEST(null_comm_rejected) {
  llConfig_t c = valid();
  llComm_t comm;
  EXPECT_EQ(llCommInitFromNccl(&comm, nullptr, &c), llInvalidArgument);
  EXPECT(strstr(llGetLastError(nullptr), "NCCL communicator is NULL") != nullptr);
  EXPECT_EQ(llCommInitFromNccl(nullptr, (ncclComm_t)0x10, &c), llInvalidArgument);
  llConfig_t bad = valid();
  bad.magic = 0;
  EXPECT_EQ(llCommInitFromNccl(&comm, (ncclComm_t)0x10, &bad), llInvalidArgument);
}

LL_TEST_MAIN()
