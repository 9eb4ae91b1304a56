// llCombine on the GPU.
//
// Send phase. Work items are (local expert, source rank): the item's rows (from the dispatch's
// layout range) go back to the source rank, each into the slot (global expert, token) of its receive
// region, where the token is the row's src_info. The last block to finish signals every rank.
//
// Receive phase. Once every rank's signal is in, each warp reduces whole tokens: for each 16-byte
// chunk it accumulates w[t][k] * row(e_k, t) over k in fp32 and rounds once to bf16. The last block
// returns this half's credits to every peer.
#include "device/common.cuh"
#include "device/dispatch.h"
#include "device/fp8_quant.h"

namespace {

__device__ void sendPhase(const llCombineKernelArgs& a, uint64_t seq, uint64_t prevOnHalf, uint64_t deadline) {
  const llCommonKernelArgs& c = a.c;
  int R = c.nranks, El = c.localExperts, N = c.maxTokens;
  size_t rowsPerExpert = (size_t)R * N;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  llAwaitCredits(c, prevOnHalf, deadline);
  for (int item = blockIdx.x; item < El * R; item += gridDim.x) {
    int le = item / R, src = item % R;
    int64_t range = a.layoutRange[(size_t)le * R + src];
    int begin = (int)(range >> 32), count = (int)(range & 0xffffffff);
    if (begin < 0 || count < 0 || count > N || (size_t)begin + count > rowsPerExpert) {
      if (threadIdx.x == 0) llReportError(c, llInvalidArgument);  // not a layout this library produced
      continue;
    }
    int expert = c.rank * El + le;
    char* dstBase = c.routes[src].base + c.recvOffset + (size_t)expert * N * a.rowBytes;
    for (int j = warp; j < count; j += kLlWarps) {
      size_t row = (size_t)le * rowsPerExpert + begin + j;
      int token = a.srcInfo[row];
      if (token < 0 || token >= N) {
        if (lane == 0) llReportError(c, llInvalidArgument);
        continue;
      }
      const char* from = reinterpret_cast<const char*>(a.x) + row * a.rowBytes;
      char* to = dstBase + (size_t)token * a.rowBytes;
      for (size_t v = lane; v < a.rowBytes / 16; v += 32) llStore16(to + v * 16, llLoad16(from + v * 16));
    }
  }
  if (llLastBlock(&c.state->sendDone[c.half])) {
    for (int peer = threadIdx.x; peer < R; peer += blockDim.x)
      llStoreRelease(llSignalWord(c.routes[peer].base, c, c.combineSignalWord + c.rank), seq << 32);
    llPublishSequence(c, seq);
  }
}

// out[t] for one token, by one warp: lane k holds (expert, weight) of pair k.
__device__ void reduceToken(const llCombineKernelArgs& a, int token, int lane) {
  const llCommonKernelArgs& c = a.c;
  int K = c.topk, E = c.numExperts, H = c.hidden;
  int expert = -1;
  float weight = 0.f;
  if (lane < K) {
    int64_t e = a.topkIdx[(size_t)token * K + lane];
    if (e >= 0 && e < E) expert = (int)e, weight = a.topkWeights[(size_t)token * K + lane];
  }
  const char* recv = c.ownBuffer + c.recvOffset;
  uint16_t* out = a.out + (size_t)token * H;
  for (int v = lane; v < H / 8; v += 32) {
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (int k = 0; k < K; k++) {
      int e = __shfl_sync(0xffffffffu, expert, k);
      float w = __shfl_sync(0xffffffffu, weight, k);
      if (e < 0) continue;
      int4 raw = llLoad16(recv + ((size_t)e * c.maxTokens + token) * a.rowBytes + (size_t)v * 16);
      const uint16_t* h = reinterpret_cast<const uint16_t*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; i++) acc[i] = fmaf(w, llBf16ToFloat(h[i]), acc[i]);
    }
    int4 packed;
    uint16_t* p = reinterpret_cast<uint16_t*>(&packed);
#pragma unroll
    for (int i = 0; i < 8; i++) p[i] = llFloatToBf16(acc[i]);
    llStore16(out + (size_t)v * 8, packed);
  }
}

__device__ void recvPhase(const llCombineKernelArgs& a, uint64_t seq, uint64_t deadline) {
  const llCommonKernelArgs& c = a.c;
  uint64_t waitStart = llGlobalTimerNs();
  for (int peer = threadIdx.x; peer < c.nranks; peer += blockDim.x) {
    llWaitTagged(c, llSignalWord(c.ownBuffer, c, c.combineSignalWord + peer), (uint32_t)seq, deadline);
    if (blockIdx.x == 0 && a.waitTimeStats)
      atomicAdd((unsigned long long*)&a.waitTimeStats[peer], (unsigned long long)(llGlobalTimerNs() - waitStart));
  }
  __syncthreads();
  int lane = threadIdx.x % 32;
  int globalWarp = blockIdx.x * kLlWarps + threadIdx.x / 32;
  for (int token = globalWarp; token < c.numTokens; token += gridDim.x * kLlWarps) reduceToken(a, token, lane);
  if (llLastBlock(&c.state->recvDone[c.half])) llReturnCredits(c, seq);
}

__global__ void __launch_bounds__(kLlThreads, 1) combineKernel(const llCombineKernelArgs a) {
  uint64_t seq, prevOnHalf;
  llCallSequence(a.c, &seq, &prevOnHalf);
  uint64_t deadline = llGlobalTimerNs() + a.c.timeoutNs;
  if (a.c.phases & LL_PHASE_SEND) sendPhase(a, seq, prevOnHalf, deadline);
  if (a.c.phases & LL_PHASE_RECV) recvPhase(a, seq, deadline);
}

}  // namespace

cudaError_t llLaunchCombine(const llCombineKernelArgs& args, int blocks, cudaStream_t stream) {
  combineKernel<<<blocks, kLlThreads, 0, stream>>>(args);
  return cudaGetLastError();
}
