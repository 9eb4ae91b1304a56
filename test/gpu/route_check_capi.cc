// C entry points of the route check, for the Python test that drives llCommInitFromNccl through ctypes
// (exported from libllep_gputest.so, a test-only build of the library with the check inside).
#include <cuda_runtime_api.h>

#include "test/gpu/route_check.h"

extern "C" __attribute__((visibility("default"))) int llTestRouteCheck(llComm_t comm, unsigned cycle,
                                                                       unsigned long long* wrongWords,
                                                                       unsigned* missingSignals) {
  llRouteCheckResult r{};
  llResult_t res = llRouteCheck(comm, cycle, &r);
  *wrongWords = r.wrongWords;
  *missingSignals = r.missingSignals;
  return res;
}

extern "C" __attribute__((visibility("default"))) size_t llTestFreeGpuBytes() {
  size_t freeB = 0, total = 0;
  return cudaMemGetInfo(&freeB, &total) == cudaSuccess ? freeB : 0;
}
