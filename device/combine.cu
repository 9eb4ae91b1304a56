// llCombine on the GPU.
//
// Send phase. Work items are (local expert, source rank): the item's rows (from the dispatch's
// layout range) go back to the source rank, each into the slot (token, k) of its receive region, where
// the token is the row's src_info and k its pair's place in the token's topk (recorded by the
// dispatch). Rows of this rank's own tokens stay where they are: the receive phase reads them from x
// directly. The last block to finish signals every rank.
//
// Receive phase. Once every rank's signal is in, warps reduce (token, 256-channel chunk) units: each
// lane accumulates w[t][k] * row(e_k, t) over k for 8 channels in fp32 and rounds once to bf16. This
// half's credits go back to every peer from the next kernel (every peer p2p, llDefersCredits), or
// else from the last block.
//
// Both phases spread rows over (row, chunk) units so that a few tokens still occupy every SM.
#include "device/common.cuh"
#include "device/dispatch.h"
#include "device/fp8_quant.h"
#include "device/peer_ops.cuh"

namespace {

// Units (row, 512-byte chunk) a send-phase warp keeps in flight.
constexpr int kSendBatch = 4;

// Offset in a rank's buffer (this call's half) of the row for its pair (token, k).
__device__ __forceinline__ uint64_t slotOffset(const llCombineKernelArgs& a, int token, int k) {
  return a.c.recvOffset + ((size_t)token * kLlCombineSlotsPerToken + k) * a.rowBytes;
}

__device__ void sendPhase(const llCombineKernelArgs& a, uint64_t seq, uint64_t prevOnHalf) {
  const llCommonKernelArgs& c = a.c;
  int R = c.nranks, El = c.localExperts, N = c.maxTokens;
  size_t rowsPerExpert = (size_t)R * N;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  llAwaitCredits(c, prevOnHalf);
  // Items (local expert, source) in source-major order, so that every block's items (every
  // gridDim.x-th) cover all sources. In expert-major order (le * R + src) block b only got sources
  // equal to b modulo gcd(gridDim.x, R), and the blocks whose source was this rank (own rows, nothing
  // to send) sat idle: half of an even grid at R = 2, 2 of 16 blocks at R = 8 under MPS. Sources
  // start after this rank, so that at any moment the ranks send to different peers rather than all to
  // rank 0 first (on separate GPUs, one receiver's link would take every sender at once).
  for (int item = blockIdx.x; item < El * R; item += gridDim.x) {
    int le = item % El, src = (item / El + c.rank + 1) % R;
    if (src == c.rank) continue;
    int64_t range = a.layoutRange[(size_t)le * R + src];
    int begin = (int)(range >> 32), count = (int)(range & 0xffffffff);
    if (begin < 0 || count < 0 || count > N || (size_t)begin + count > rowsPerExpert) {
      if (threadIdx.x == 0) llReportError(c, llInvalidArgument);  // not a layout this library produced
      continue;
    }
    // ibgda: rows go out from the send region (where a zero-copy x already is), one RDMA write each.
    bool ibgda = llIsIbgda(c, src);
    char* staging = c.ownBuffer + c.sendOffset;
    bool staged = ibgda && reinterpret_cast<const char*>(a.x) == staging;
    size_t vecsPerRow = a.rowBytes / 16;
    size_t chunks = (vecsPerRow + 31) / 32, units = (size_t)count * chunks;
    // A warp's units u, u + kLlWarps, ... kSendBatch at a time: every load of the batch (src_info and
    // row) is in flight before the first store, instead of one dependent round trip per unit.
    for (size_t u0 = warp; u0 < units; u0 += (size_t)kLlWarps * kSendBatch) {
      int4 data[kSendBatch];
      char* to[kSendBatch];
#pragma unroll
      for (int i = 0; i < kSendBatch; i++) {
        size_t u = u0 + (size_t)i * kLlWarps;
        to[i] = nullptr;
        if (u >= units) continue;
        size_t j = u / chunks, v = (u % chunks) * 32 + lane;
        size_t row = (size_t)le * rowsPerExpert + begin + j;
        int token = a.srcInfo[row], k = a.rowPairK[row];
        if (token < 0 || token >= N || k < 0 || k >= kLlCombineSlotsPerToken) {
          if (lane == 0) llReportError(c, llInvalidArgument);
          continue;
        }
        if (v >= vecsPerRow || staged) continue;
        data[i] = llLoad16(reinterpret_cast<const char*>(a.x) + row * a.rowBytes + v * 16);
        to[i] = (ibgda ? staging + row * a.rowBytes : c.routes[src].base + slotOffset(a, token, k)) + v * 16;
      }
#pragma unroll
      for (int i = 0; i < kSendBatch; i++)
        if (to[i]) llStore16(to[i], data[i]);
    }
    if (!ibgda) continue;
    __syncthreads();  // the item's rows are whole: one thread per row posts it
    for (int j = threadIdx.x; j < count; j += blockDim.x) {
      size_t row = (size_t)le * rowsPerExpert + begin + j;
      int token = a.srcInfo[row], k = a.rowPairK[row];
      if (token < 0 || token >= N || k < 0 || k >= kLlCombineSlotsPerToken) continue;  // reported above
      llIbgdaFenceStaged();
      llIbgdaPut(c, src, staging + row * a.rowBytes, slotOffset(a, token, k), (uint32_t)a.rowBytes);
    }
  }
  if (llLastBlock(c, &c.state->sendDone[c.half])) {
    for (int peer = threadIdx.x; peer < R; peer += blockDim.x)
      if (peer != c.rank)  // own rows are read from x: nothing to wait for
        llSetPeerSignal(c, peer, c.combineSignalWord + c.rank, seq << 32);
    __syncthreads();  // every signal posted before the quiet that covers them
    llIbgdaQuietAll(c);
    llPublishSequence(c, seq);
  }
}

// out[t] for chunks [firstChunk, lastChunk) (256 channels each, 8 per lane) of one token, by one
// warp. A pair whose expert is this rank's is read from x at the row the dispatch recorded; the
// others from the receive region. The pair lookups are done once for all the warp's chunks.
__device__ void reduceChunks(const llCombineKernelArgs& a, int token, int firstChunk, int lastChunk, int lane) {
  const llCommonKernelArgs& c = a.c;
  int K = c.topk, E = c.numExperts, H = c.hidden;
  int expert = -1;
  float weight = 0.f;
  const char* from = nullptr;  // lane k: start of pair k's row
  if (lane < K) {
    // The three loads are independent: pairRows is -1 for every pair whose expert is not this rank's.
    int64_t e = a.topkIdx[(size_t)token * K + lane];
    float w = a.topkWeights[(size_t)token * K + lane];
    int row = a.pairRows[(size_t)token * K + lane];
    if (e >= 0 && e < E) {
      weight = w;
      expert = (int)e;  // 32-bit from here: 64-bit division is a long subroutine
      if (expert / c.localExperts == c.rank) {
        if (row >= 0) from = reinterpret_cast<const char*>(a.x) + (size_t)row * a.rowBytes;
        else expert = -1;  // dropped at dispatch (reported there)
      } else {
        from = c.ownBuffer + slotOffset(a, token, lane);
      }
    }
  }
  uint64_t policy = llEvictFirstPolicy();
  for (int chunk = firstChunk; chunk < lastChunk; chunk++) {
    size_t v = (size_t)chunk * 32 + lane;  // 16-byte vector (8 channels) of this lane
    bool inRow = v * 8 < (size_t)H;
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    // All of a batch's rows in flight at once: the loads are independent, only the sums are not.
    constexpr int kBatch = 4;  // 8 spills at the 64 registers a 1024-thread block allows
    for (int k0 = 0; k0 < K; k0 += kBatch) {
      int4 raw[kBatch];
      float w[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; i++) {
        int e = __shfl_sync(0xffffffffu, expert, (k0 + i) & 31);
        w[i] = __shfl_sync(0xffffffffu, weight, (k0 + i) & 31);
        const char* rowStart = (const char*)__shfl_sync(0xffffffffu, (unsigned long long)from, (k0 + i) & 31);
        bool use = k0 + i < K && e >= 0 && inRow;
        raw[i] = use ? llLoad16Once(rowStart + v * 16, policy) : make_int4(0, 0, 0, 0);
        if (!use) w[i] = 0.f;
      }
#pragma unroll
      for (int i = 0; i < kBatch; i++) {
        const uint16_t* h = reinterpret_cast<const uint16_t*>(&raw[i]);
#pragma unroll
        for (int j = 0; j < 8; j++) acc[j] = fmaf(w[i], llBf16ToFloat(h[j]), acc[j]);
      }
    }
    if (!inRow) continue;
    int4 packed;
    uint16_t* p = reinterpret_cast<uint16_t*>(&packed);
#pragma unroll
    for (int i = 0; i < 8; i++) p[i] = llFloatToBf16(acc[i]);
    llStore16(a.out + (size_t)token * H + v * 8, packed);
  }
}

__device__ void recvPhase(const llCombineKernelArgs& a, uint64_t seq) {
  const llCommonKernelArgs& c = a.c;
  // Only the threads that may wait read the clock: it is slow to read.
  uint64_t waitStart = a.waitTimeStats && threadIdx.x < c.nranks ? llGlobalTimerNs() : 0;
  for (int peer = threadIdx.x; peer < c.nranks; peer += blockDim.x) {
    if (peer == c.rank) continue;
    llWaitTagged(c, llSignalWord(c.ownBuffer, c, c.combineSignalWord + peer), (uint32_t)seq);
    if (blockIdx.x == 0 && a.waitTimeStats)
      atomicAdd((unsigned long long*)&a.waitTimeStats[peer], (unsigned long long)(llGlobalTimerNs() - waitStart));
  }
  __syncthreads();
  int lane = threadIdx.x % 32;
  // Units of (token, run of chunks): as many units as warps when tokens are few, longer runs (fewer
  // repeated pair lookups) when they are many.
  int chunks = (c.hidden + 255) / 256;
  int warps = gridDim.x * kLlWarps;
  int run = max(1, (c.numTokens * chunks + warps - 1) / warps);
  int runs = (chunks + run - 1) / run;
  int units = c.numTokens * runs;
  for (int u = blockIdx.x * kLlWarps + threadIdx.x / 32; u < units; u += warps) {
    int first = (u % runs) * run;
    reduceChunks(a, u / runs, first, min(chunks, first + run), lane);
  }
  if (!llDefersCredits(c) && llLastBlock(c, &c.state->recvDone[c.half])) llReturnCredits(c, seq);
}

__global__ void __launch_bounds__(kLlThreads, 1) combineKernel(const llCombineKernelArgs a) {
  uint64_t seq, prevOnHalf;
  llCallSequence(a.c, &seq, &prevOnHalf);
  llOwedCredits owed = llPeekOwedCredits(a.c);
  if (a.c.phases & LL_PHASE_SEND) sendPhase(a, seq, prevOnHalf);
  llSettleCredits(a.c, seq, owed, true);
  if (a.c.phases & LL_PHASE_RECV) recvPhase(a, seq);
  llSettleCredits(a.c, seq, owed, false);
}

}  // namespace

cudaError_t llLaunchCombine(const llCombineKernelArgs& args, int blocks, cudaStream_t stream) {
  combineKernel<<<blocks, kLlThreads, 0, stream>>>(args);
  return cudaGetLastError();
}
