#include "test/perf/perf_kernels.h"

#include "device/common.cuh"

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

// Grid-stride 16-byte loads under an evict-last policy; the XOR of everything read goes to `sink` only
// when it equals a pattern no fill of the benchmark makes, so the compiler keeps every load and memory
// sees no store. Evict-last, because lines a call stored under that policy (the dispatch's own-row
// scales) give way only to lines of the same priority: a flush by normal loads leaves them in the L2,
// and the next call would find them there.
__global__ void readFlushKernel(const int4* buffer, size_t vecs, int4* sink) {
  uint64_t keep = llEvictLastPolicy();
  int4 acc = make_int4(0, 0, 0, 0);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < vecs; i += (size_t)gridDim.x * blockDim.x) {
    int4 v;
    asm volatile("ld.global.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(buffer + i), "l"(keep));
    acc.x ^= v.x, acc.y ^= v.y, acc.z ^= v.z, acc.w ^= v.w;
  }
  if (acc.x == 0x5eed1e55 && acc.y == -1 && acc.z == 0x1ee9 && acc.w == 7) *sink = acc;
}

// Then the flush's own lines back to normal priority, so the timed call meets an L2 of clean lines
// that all give way as they would to any other kernel's.
__global__ void normalPriorityKernel(const char* buffer, size_t lines) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < lines; i += (size_t)gridDim.x * blockDim.x)
    asm volatile("applypriority.global.L2::evict_normal [%0], 128;" ::"l"(buffer + i * 128) : "memory");
}

}  // namespace

cudaError_t llPerfLaunchReadFlush(const void* buffer, size_t bytes, int4* sink, cudaStream_t stream) {
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  readFlushKernel<<<sms * 4, 512, 0, stream>>>(static_cast<const int4*>(buffer), bytes / 16, sink);
  normalPriorityKernel<<<sms * 4, 512, 0, stream>>>(static_cast<const char*>(buffer), bytes / 128);
  return cudaGetLastError();
}

cudaError_t llPerfLaunchEmpty(cudaStream_t stream) {
  emptyKernel<<<1, 32, 0, stream>>>();
  return cudaGetLastError();
}

cudaError_t llPerfLaunchPingPong(uint64_t* ownFlag, uint64_t* peerFlag, int iters, int skip, bool initiator,
                                 uint64_t timeoutNs, uint64_t* result, cudaStream_t stream) {
  pingPongKernel<<<1, 1, 0, stream>>>(ownFlag, peerFlag, iters, skip, initiator, timeoutNs, result);
  return cudaGetLastError();
}
