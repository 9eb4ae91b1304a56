// The C API's contract where no communicator or GPU is needed.
#include <cuda_runtime_api.h>

#include <cstring>
#include <set>
#include <string>

#include "harness.h"
#include "llep.h"

namespace {
llConfig_t validConfig() {
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = 128;
  c.hidden = 1024;
  c.numExperts = 8;
  return c;
}
}  // namespace

LL_TEST(result_strings) {
  std::set<std::string> seen;
  for (int r = 0; r < llNumResults; r++) {
    const char* s = llGetErrorString((llResult_t)r);
    EXPECT(s != nullptr && s[0] != '\0');
    EXPECT_MSG(seen.insert(s).second, "result %d shares its string", r);
  }
  EXPECT_EQ(std::string(llGetErrorString(llTimeout)).find("timeout") != std::string::npos, true);
  EXPECT(llGetErrorString((llResult_t)12345) != nullptr);
  // Same numbering as ncclResult_t where both define a code.
  EXPECT_EQ((int)llInvalidArgument, 4);
  EXPECT_EQ((int)llInvalidUsage, 5);
  EXPECT_EQ((int)llTimeout, 8);
}

LL_TEST(version) {
  int v = 0;
  EXPECT_OK(llGetVersion(&v));
  EXPECT_EQ(v, LLEP_VERSION);
  EXPECT_EQ(llGetVersion(nullptr), llInvalidArgument);
}

LL_TEST(null_arguments) {
  int x = 0;
  llResult_t err;
  EXPECT_EQ(llCommCount(nullptr, &x), llInvalidArgument);
  EXPECT(strstr(llGetLastError(nullptr), "comm is NULL") != nullptr);
  EXPECT_EQ(llCommUserRank(nullptr, &x), llInvalidArgument);
  EXPECT_EQ(llCommGetAsyncError(nullptr, &err), llInvalidArgument);
  EXPECT_EQ(llCommDestroy(nullptr), llInvalidArgument);
  EXPECT_EQ(llGetUniqueId(nullptr), llInvalidArgument);
  llConfig_t c = validConfig();
  llUniqueId id;
  memset(&id, 0, sizeof(id));
  EXPECT_EQ(llCommInitRank(nullptr, 1, id, 0, &c), llInvalidArgument);
  llComm_t comm = (llComm_t)0x1;
  EXPECT_EQ(llCommInitRank(&comm, 0, id, 0, &c), llInvalidArgument);
  EXPECT(comm == nullptr);
  EXPECT(strstr(llGetLastError(nullptr), "nranks") != nullptr);
  EXPECT_EQ(llCommInitRank(&comm, 2, id, 2, &c), llInvalidArgument);
  EXPECT(strstr(llGetLastError(nullptr), "rank = 2") != nullptr);
  EXPECT_EQ(llCommInitRank(&comm, 2, id, -1, &c), llInvalidArgument);
  EXPECT_EQ(llCommInitRank(&comm, 1, id, 0, nullptr), llInvalidArgument);
  EXPECT(strstr(llGetLastError(nullptr), "config is NULL") != nullptr);
  EXPECT_EQ(llCommInitFromNccl(&comm, nullptr, &c), llInvalidArgument);
}

LL_TEST(buffer_hint) {
  size_t small = 0, big = 0, more = 0;
  EXPECT_OK(llGetBufferSizeHint(128, 7168, 8, 256, &small));
  EXPECT_OK(llGetBufferSizeHint(1024, 7168, 8, 256, &big));
  EXPECT_OK(llGetBufferSizeHint(128, 7168, 8, 512, &more));
  EXPECT(small > 0 && big > small && more > small);
  // At least the dispatch receive region of both halves: E * N messages of 2H + 16 bytes.
  EXPECT(small >= 2ull * 256 * 128 * (2 * 7168 + 16));
  EXPECT_EQ(small % 4096, 0u);
  EXPECT_EQ(llGetBufferSizeHint(128, 7168, 8, 256, nullptr), llInvalidArgument);
  EXPECT_EQ(llGetBufferSizeHint(0, 7168, 8, 256, &small), llInvalidArgument);
  EXPECT_EQ(llGetBufferSizeHint(128, 100, 8, 256, &small), llInvalidArgument);
  EXPECT(strstr(llGetLastError(nullptr), "hidden = 100") != nullptr);
  EXPECT_EQ(llGetBufferSizeHint(128, 7168, 3, 256, &small), llInvalidArgument);
  EXPECT_EQ(llGetBufferSizeHint(128, 7168, 0, 256, &small), llInvalidArgument);
}

LL_TEST(last_error_is_one_line) {
  llConfig_t c = validConfig();
  c.hidden = 1000;
  llComm_t comm;
  llUniqueId id;
  memset(&id, 0, sizeof(id));
  EXPECT_EQ(llCommInitRank(&comm, 1, id, 0, &c), llInvalidArgument);
  const char* msg = llGetLastError(comm);
  EXPECT(strlen(msg) > 10);
  EXPECT(strchr(msg, '\n') == nullptr);
  EXPECT(strstr(msg, "config.hidden = 1000") != nullptr);
}

LL_TEST(no_gpu_init_fails_cleanly) {
  int count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) LL_SKIP("a GPU is present");
  llConfig_t c = validConfig();
  llUniqueId id;
  EXPECT_OK(llGetUniqueId(&id));
  llComm_t comm = (llComm_t)0x1;
  EXPECT_EQ(llCommInitRank(&comm, 1, id, 0, &c), llCudaError);
  EXPECT(comm == nullptr);
  EXPECT(strstr(llGetLastError(nullptr), "no usable CUDA device") != nullptr);
}

LL_TEST_MAIN()
