// ibgda_qp.h's spin loops call this on every pause (LL_IBGDA_DEVICE_SPIN_HOOK, see ibgda_sync.h), so it is
// named before any header can bring ibgda_sync.h in.
namespace ibgdatest {
__device__ void giveUpAtDeadline();
}
#define LL_IBGDA_DEVICE_SPIN_HOOK() ibgdatest::giveUpAtDeadline()

#include "test/gpu/ibgda_device_kernels.h"

#include <cuda_runtime.h>

#include "transport/ibgda/ibgda_qp.h"

namespace ibgdatest {
namespace {

// The deadline of the current launch (%globaltimer ns), set by armDeadline just before it on its stream,
// and the threads that gave up waiting since.
__device__ unsigned long long gDeadlineNs;
__device__ unsigned int gSpinTimeouts;

__device__ inline uint64_t globalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

}  // namespace

// Past the deadline the thread ends; threads waiting on it (in-order publication) reach the deadline too, so
// the whole kernel ends, and the host reads the QP's counters to say where it stopped.
__device__ void giveUpAtDeadline() {
  if (globalTimerNs() < gDeadlineNs) return;
  atomicAdd(&gSpinTimeouts, 1u);
  asm volatile("exit;");
}

namespace {

__global__ void armDeadline(uint64_t timeoutNs) {
  gDeadlineNs = globalTimerNs() + timeoutNs;
  gSpinTimeouts = 0;
}

// Posts of different kinds and sizes interleave across warps and blocks, so reservations, in-order
// publication and CQ polling contend; the ring (a few dozen WQEBBs) wraps many times.
__global__ void traffic(TrafficArgs a, uint32_t* syndromes) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  LlIbgdaQp* qp = a.qp;
  for (int k = 0; k < kWritesPerThread; k++)
    llIbgdaPostWrite(qp, {a.local + kSource + slot(t, k), a.lkey}, writeLen(t, k),
                     {a.remote + kInbound + slot(t, k), a.rkey});
  const uint32_t v4 = inline4(a.rank, t);
  const uint64_t v8 = inline8(a.rank, t);
  llIbgdaPostWriteInline(qp, &v4, sizeof(v4), {a.remote + kInline + 16 * (size_t)t, a.rkey});
  llIbgdaPostWriteInline(qp, &v8, sizeof(v8), {a.remote + kInline + 16 * (size_t)t + 8, a.rkey});
  const uint64_t results = a.local + kResults + 16 * (size_t)t;
  llIbgdaPostFetchAdd64(qp, kFetchAdd, {results, a.lkey}, {a.remote + kFetchAddWord, a.rkey});
  if (t % 2 == 0)
    llIbgdaPostMaskedFetchAdd32(qp, kMasked32Add, kMasked32Boundary, {results + 8, a.lkey},
                                {a.remote + kMasked32Word, a.rkey});
  else
    llIbgdaPostMaskedFetchAdd64(qp, kMasked64Add, kMasked64Boundary, {results + 8, a.lkey},
                                {a.remote + kMasked64Word, a.rkey});
  syndromes[t] = llIbgdaQuiet(qp);
}

__global__ void badRkeyWrite(TrafficArgs a, uint32_t rkey, BadWriteResult* result) {
  const uint64_t first = llIbgdaPostWrite(a.qp, {a.local + kSource, a.lkey}, 64, {a.remote + kUntouched, rkey});
  result->syndrome = llIbgdaQuiet(a.qp);
  result->errWqeCounter = llLoadVolatile(&a.qp->errWqeCounter);
  result->postedCounter = static_cast<uint16_t>(first);
  result->finished = 1;
}

}  // namespace

cudaError_t launchTraffic(const TrafficArgs& args, uint32_t* syndromes, uint64_t timeoutNs, cudaStream_t stream) {
  armDeadline<<<1, 1, 0, stream>>>(timeoutNs);
  traffic<<<kBlocks, kThreadsPerBlock, 0, stream>>>(args, syndromes);
  return cudaGetLastError();
}

cudaError_t launchBadRkeyWrite(const TrafficArgs& args, uint32_t rkey, BadWriteResult* result, uint64_t timeoutNs,
                               cudaStream_t stream) {
  armDeadline<<<1, 1, 0, stream>>>(timeoutNs);
  badRkeyWrite<<<1, 1, 0, stream>>>(args, rkey, result);
  return cudaGetLastError();
}

cudaError_t spinTimeouts(unsigned* count) { return cudaMemcpyFromSymbol(count, gSpinTimeouts, sizeof(*count)); }

}  // namespace ibgdatest
