#include "test/gpu/route_check.h"

#include <cuda_runtime.h>

#include "buffer_layout.h"
#include "checks.h"
#include "device/primitives.cuh"
#include "device/route.h"

namespace {

constexpr size_t kSlotWords = 16384;  // 64 KiB per source rank
constexpr int kThreads = 256;

__host__ __device__ uint32_t pattern(uint32_t src, uint32_t dst, uint32_t word, uint32_t cycle) {
  uint32_t x = (src * 0x9E3779B1u) ^ (dst * 0x85EBCA77u) ^ (word * 0xC2B2AE3Du) ^ (cycle * 0x27D4EB2Fu);
  return x ^ (x >> 15);
}

// Block p writes this rank's slot in peer p's receive region, then signals p.
__global__ void writeToPeers(const llRoute* routes, uint32_t me, size_t recvOffset, size_t signalOffset,
                             uint32_t cycle) {
  uint32_t peer = blockIdx.x;
  char* base = routes[peer].base;
  uint32_t* slot = reinterpret_cast<uint32_t*>(base + recvOffset) + me * kSlotWords;
  for (size_t w = threadIdx.x; w < kSlotWords; w += blockDim.x) slot[w] = pattern(me, peer, (uint32_t)w, cycle);
  __syncthreads();
  if (threadIdx.x == 0) {
    uint64_t* signal = reinterpret_cast<uint64_t*>(base + signalOffset) + me;
    llStoreRelease(signal, cycle + 1ull);
  }
}

// Block s waits for source s's signal in this rank's own buffer, then checks its slot.
__global__ void waitAndVerify(char* own, uint32_t me, size_t recvOffset, size_t signalOffset, uint32_t cycle,
                              uint64_t timeoutNs, llRouteCheckResult* result) {
  uint32_t src = blockIdx.x;
  __shared__ int arrived;
  if (threadIdx.x == 0) {
    const uint64_t* signal = reinterpret_cast<const uint64_t*>(own + signalOffset) + src;
    uint64_t deadline = llGlobalTimerNs() + timeoutNs;
    while (llLoadAcquire(signal) != cycle + 1ull && llGlobalTimerNs() < deadline) {
    }
    arrived = llLoadAcquire(signal) == cycle + 1ull;
    if (!arrived) atomicAdd(&result->missingSignals, 1u);
  }
  __syncthreads();
  if (!arrived) return;
  const uint32_t* slot = reinterpret_cast<const uint32_t*>(own + recvOffset) + src * kSlotWords;
  unsigned long long wrong = 0;
  for (size_t w = threadIdx.x; w < kSlotWords; w += blockDim.x)
    wrong += slot[w] != pattern(src, me, (uint32_t)w, cycle);
  if (wrong) atomicAdd(&result->wrongWords, wrong);
}

}  // namespace

llResult_t llRouteCheck(llComm* comm, uint32_t cycle, llRouteCheckResult* result) {
  const llCommConfig& c = comm->config;
  llBufferLayout layout = llBufferLayoutFor(c.maxTokensPerRank, c.hidden, comm->nranks, c.numExperts);
  const llBufferHalf& h = layout.half[0];
  size_t ranks = (size_t)comm->nranks;
  LL_REQUIRE(h.recvBytes >= ranks * kSlotWords * 4 && h.signalBytes >= ranks * 8, llInvalidUsage,
             "route check: the buffer is too small for %d slots of %zu bytes", comm->nranks, kSlotWords * 4);
  llRouteCheckResult* dev = nullptr;
  CUDACHECK(cudaMalloc(&dev, sizeof(*dev)));
  CUDACHECK(cudaMemset(dev, 0, sizeof(*dev)));
  writeToPeers<<<comm->nranks, kThreads>>>(comm->devRoutes, comm->rank, h.recvOffset, h.signalOffset, cycle);
  CUDACHECK(cudaGetLastError());
  waitAndVerify<<<comm->nranks, kThreads>>>(comm->buffer, comm->rank, h.recvOffset, h.signalOffset, cycle,
                                            (uint64_t)c.timeoutMs * 1000000ull, dev);
  CUDACHECK(cudaGetLastError());
  CUDACHECK(cudaMemcpy(result, dev, sizeof(*dev), cudaMemcpyDeviceToHost));
  CUDACHECK(cudaFree(dev));
  return llSuccess;
}
