#include "test/perf/perf_kernels.h"

#include "device/primitives.cuh"

namespace {

__global__ void emptyKernel() {}

// One thread: the round trip is a latency, and more threads would only add contention on the flags.
// The time is read over many round trips after the first `skip` (the peer may start late), so the
// global timer's coarse tick does not matter.
__global__ void pingPongKernel(uint64_t* own, uint64_t* peer, int iters, int skip, bool initiator,
                               uint64_t timeoutNs, uint64_t* result) {
  uint64_t deadline = llGlobalTimerNs() + timeoutNs;
  for (int i = 1; i <= iters; i++) {
    if (initiator) llStoreRelease(peer, i);
    while (llLoadAcquire(own) < static_cast<uint64_t>(i)) {
      if (llGlobalTimerNs() > deadline) {
        result[0] = 1;
        return;
      }
    }
    if (!initiator) llStoreRelease(peer, i);
    if (initiator && i == skip) result[1] = llGlobalTimerNs();
  }
  result[0] = 0;
  result[2] = llGlobalTimerNs();
}

}  // namespace

cudaError_t llPerfLaunchEmpty(cudaStream_t stream) {
  emptyKernel<<<1, 32, 0, stream>>>();
  return cudaGetLastError();
}

cudaError_t llPerfLaunchPingPong(uint64_t* ownFlag, uint64_t* peerFlag, int iters, int skip, bool initiator,
                                 uint64_t timeoutNs, uint64_t* result, cudaStream_t stream) {
  pingPongKernel<<<1, 1, 0, stream>>>(ownFlag, peerFlag, iters, skip, initiator, timeoutNs, result);
  return cudaGetLastError();
}
