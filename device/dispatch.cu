// llDispatch on the GPU.
//
// Row order. The rows of an expert come from its own rank first, then from the following ranks in
// turn (owner, owner+1, ..., owner-1), each source's pairs in (token, k) order: deterministic whatever
// the timing, and the owner's own block always starts at row 0, so a rank writes its own tokens for
// its own experts straight into the caller's output (no message, no second copy).
//
// Send phase. Every other (token, k) pair goes to its expert's rank as one message in the slot
// (local expert, this rank, slot) of the receiver's half. A pair's slot is the number of earlier
// pairs (in token, then k order) for the same expert. Blocks own contiguous token ranges; each counts
// the pairs before its range, then takes rounds of tokens: slots first, then every warp takes
// (token, 256-channel chunk) units. Every block counts all pairs per expert (one pass over topk_idx,
// cheap next to the payload), so this rank's own counts need no signal; the last block to finish
// sends every other rank, for each of its experts, one signal (sequence << 32) | pairs sent.
//
// Receive phase. Every block waits for every (local expert, source) signal, takes this rank's own
// counts from its histogram, and derives each item's first row (the row order) and its place in one
// flat list of all received messages; the grid's warps then copy that list into the caller's packed
// layout in one pass. This half's credits go back to every peer from the next kernel (every peer p2p,
// llDefersCredits), or else from the last block. With one rank nothing waits.
#include <cuda_fp8.h>

#include "device/common.cuh"
#include "device/dispatch.h"
#include "device/fp8_quant.h"
#include "device/peer_ops.cuh"

namespace {

// One warp step: bf16 32 lanes x 8 channels (16-byte loads and stores); fp8 32 lanes x 16 channels,
// four groups of 128 (two 16-byte loads, each of the warp's 512 contiguous bytes; two 8-byte stores).
constexpr int kChunkChannelsBf16 = 256;
constexpr int kChunkChannelsFp8 = 512;

// Where a pair's row goes: a message to a peer, or (own expert) a row of the caller's output, whose
// fp8 scales are floats or UE8M0 bytes in the caller's scale layout.
enum PairKind : uint8_t { kPairNone, kPairMessage, kPairOwnFloatScales, kPairOwnUe8m0Scales };

// Per (token of the round, k): resolved once by assignRound, so the payload loop only adds offsets.
struct DispatchShared {
  // Pair (token t of the round, k) at t * topk + k, so that the round's pairs are one flat list.
  int roundExperts[kLlWarps * LL_MAX_TOPK];  // experts of the round's pairs (-1: none)
  int roundSlots[kLlWarps * LL_MAX_TOPK];    // their slots (-1: none)
  char* payload[kLlWarps][LL_MAX_TOPK];      // the row's first payload byte (message body or output row)
  char* scales[kLlWarps][LL_MAX_TOPK];       // fp8: group 0's scale (message: float g at + 4g; own rows: below)
  uint8_t kind[kLlWarps][LL_MAX_TOPK];       // PairKind
};

// Offset in the receiver's buffer (current half) of the message of a pair with expert e and slot.
__device__ __forceinline__ uint64_t messageOffset(const llDispatchKernelArgs& a, int e, int slot) {
  const llCommonKernelArgs& c = a.c;
  int le = e % c.localExperts;
  size_t index = ((size_t)le * c.nranks + c.rank) * c.maxTokens + slot;
  return c.recvOffset + index * a.msgBytes;
}

// Bytes of a message that carry something: header, payload, and (fp8) scales.
__device__ __forceinline__ uint32_t messageUsedBytes(const llDispatchKernelArgs& a) {
  uint32_t H = (uint32_t)a.c.hidden;
  return kLlMsgHeaderBytes + ((a.flags & LL_FP8) ? H + H / kLlQuantGroup * 4 : 2 * H);
}

// An ibgda pair's message, staged in this rank's send region until its RDMA write is posted.
struct PendingPut {
  int peer = -1;  // -1: nothing to post
  char* local;
  uint64_t remoteOffset;
};

// A vector to a target's row: global stores (a peer's row is mapped into this address space too).
template <class V>
__device__ __forceinline__ void storeTarget(char* p, V v) { __stwb(reinterpret_cast<V*>(p), v); }

// A vector (16 bytes bf16, 8 bytes fp8) at `offset` of every target row of token t of the round.
// kMaxK is a compile-time bound on topk (the kinds past topk are kPairNone), so the loop unrolls: the
// shared-memory reads of all targets issue together and every store is predicated, instead of a
// read-compare-branch chain per target.
template <int kMaxK, class V>
__device__ __forceinline__ void storeToTargets(const DispatchShared& sh, int t, size_t offset, V v) {
#pragma unroll
  for (int k = 0; k < kMaxK; k++)
    if (sh.kind[t][k] != kPairNone) storeTarget(sh.payload[t][k] + offset, v);
}

// Chunk `chunk` (256 channels) of token t of the round to its targets, bf16: 16 bytes a lane.
template <int kMaxK>
__device__ __forceinline__ void sendChunkBf16(const llDispatchKernelArgs& a, const DispatchShared& sh, int t,
                                              const uint16_t* row, int chunk, int lane, uint64_t policy) {
  size_t v = (size_t)chunk * 32 + lane;  // 16-byte vector index
  if (v * 8 >= (size_t)a.c.hidden) return;
  storeToTargets<kMaxK>(sh, t, v * 16, llLoad16Once(row + v * 8, policy));
}

// The scales of one chunk's four groups to every target, one store per lane: lane l holds the scale
// of group chunk * 4 + l % 4 and takes that group of target l / 4 (and of target 8 + l / 4 when
// topk > 8).
// Messages take floats 4 bytes apart. Own rows take floats ownScaleStride apart (rows fastest), or
// with UE8M0 one int32 word of the four groups' exponent bytes (unused bytes 0), so every word is
// written whole. These lines are written 4 bytes at a time by many blocks (a row's neighbours are
// other blocks' tokens): under an evict-last policy they stay in the L2 until their sectors are whole,
// instead of being evicted half-written by the payload streaming past and read back to be merged.
template <int kMaxK>
__device__ __forceinline__ void storeChunkScales(const llDispatchKernelArgs& a, const DispatchShared& sh, int t,
                                                 int chunk, int lane, float groupScale) {
  int groups = a.c.hidden / kLlQuantGroup;
  int g = chunk * 4 + (lane & 3);
  bool inRow = g < groups;
  uint32_t byte = inRow ? llUe8m0Byte(groupScale) : 0u;
  uint32_t word = byte;
#pragma unroll
  for (int j = 1; j < 4; j++) word |= __shfl_down_sync(0xffffffffu, byte, j) << (8 * j);
  size_t ownScaleStride = (size_t)a.c.nranks * a.c.maxTokens * 4;
  uint64_t keep = llEvictLastPolicy();
#pragma unroll
  for (int k0 = 0; k0 < kMaxK; k0 += 8) {
    int k = k0 + lane / 4;
    uint8_t kind = sh.kind[t][k];
    char* scales = sh.scales[t][k];
    if (kind == kPairMessage && inRow) {
      reinterpret_cast<float*>(scales)[g] = groupScale;
    } else if (kind == kPairOwnFloatScales && inRow) {
      llStore4Hint(scales + g * ownScaleStride, __float_as_uint(groupScale), keep);
    } else if (kind == kPairOwnUe8m0Scales && (lane & 3) == 0) {
      llStore4Hint(scales + chunk * ownScaleStride, word, keep);
    }
  }
}

// 8 bf16 channels of a lane to 8 fp8 bytes, scaled by its group of 128 channels (the lane's 16-lane
// half of the warp): the group's amax by shuffles. *scale: the group's scale, in every lane.
__device__ __forceinline__ uint2 quantizeLane(int4 raw, bool roundScale, float* scale) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(&raw);
  float f[8];
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    f[i] = llBf16ToFloat(h[i]);
    amax = fmaxf(amax, fabsf(f[i]));
  }
#pragma unroll
  for (int m = 8; m >= 1; m >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, m));
  *scale = llQuantScale(amax, roundScale);
  float inv = llQuantInvScale(amax, roundScale);
  uint2 q;
  uint16_t* pairs = reinterpret_cast<uint16_t*>(&q);
#pragma unroll
  for (int i = 0; i < 4; i++) pairs[i] = llFp8E4m3x2FromFloats(f[2 * i] * inv, f[2 * i + 1] * inv);
  return q;
}

// Chunk `chunk` (512 channels, groups chunk * 4 .. + 3) of token t of the round, fp8. Each 16-byte
// load of the warp takes 512 contiguous bytes: two groups, 16 lanes each, four 128-byte lines (with 16
// contiguous channels a lane, a load took 16 of every 32 bytes of eight lines: twice the L2 requests,
// which pace this call). Lane l holds 8 channels of group chunk * 4 + l / 16 and 8 of the group two
// further on, quantises both, stores 8 bytes of each per target, then the four groups' scales
// (storeChunkScales).
template <int kMaxK>
__device__ __forceinline__ void sendChunkFp8(const llDispatchKernelArgs& a, const DispatchShared& sh, int t,
                                             const uint16_t* row, int chunk, int lane, uint64_t policy) {
  int groups = a.c.hidden / kLlQuantGroup;
  bool roundScale = (a.flags & (LL_ROUND_SCALE | LL_UE8M0)) != 0;
  int gA = chunk * 4 + (lane >> 4), gB = gA + 2;
  size_t at = (size_t)(lane & 15) * 8;
  int4 rawA = make_int4(0, 0, 0, 0), rawB = make_int4(0, 0, 0, 0);
  if (gA < groups) rawA = llLoad16Once(row + (size_t)gA * kLlQuantGroup + at, policy);
  if (gB < groups) rawB = llLoad16Once(row + (size_t)gB * kLlQuantGroup + at, policy);
  float scaleA, scaleB;
  uint2 qA = quantizeLane(rawA, roundScale, &scaleA);
  uint2 qB = quantizeLane(rawB, roundScale, &scaleB);
  if (gA < groups) storeToTargets<kMaxK>(sh, t, (size_t)gA * kLlQuantGroup + at, qA);
  if (gB < groups) storeToTargets<kMaxK>(sh, t, (size_t)gB * kLlQuantGroup + at, qB);
  // Lane l's group chunk * 4 + l % 4: group j's scale is in lane 0 (j even) or 16 (j odd) of A or B.
  int j = lane & 3;
  float fromA = __shfl_sync(0xffffffffu, scaleA, (j & 1) * 16);
  float fromB = __shfl_sync(0xffffffffu, scaleB, (j & 1) * 16);
  storeChunkScales<kMaxK>(a, sh, t, chunk, lane, j < 2 ? fromA : fromB);
}

// Every (token, chunk) unit of one round, by all warps of the block.
template <int kMaxK>
__device__ void sendRound(const llDispatchKernelArgs& a, const DispatchShared& sh, int first, int tokens, int chunks,
                          int warp, int lane, uint64_t policy) {
  for (int u = warp; u < tokens * chunks; u += kLlWarps) {
    int t = u / chunks, chunk = u % chunks;
    const uint16_t* row = a.x + (size_t)(first + t) * a.c.hidden;
    if (a.flags & LL_FP8) sendChunkFp8<kMaxK>(a, sh, t, row, chunk, lane, policy);
    else sendChunkBf16<kMaxK>(a, sh, t, row, chunk, lane, policy);
  }
}

// Slots of one round of up to kLlWarps consecutive tokens [first, end) (warp w takes token first + w):
// a pair's slot is the block's running count `hist` of earlier pairs for its expert. Warp 0 walks the
// round's pairs in (token, k) order, 32 at a time: equal experts within a batch are ranked by lane
// (__match_any_sync), and each expert's count advances once per batch. Then every pair fills its
// target in sh and writes its message's header. expertsKnown: sh.roundExperts already holds the
// round's experts (countPairs). A pair to an ibgda peer is written into this rank's send region; *put
// says where, for the post after the round.
__device__ void assignRound(const llDispatchKernelArgs& a, int* hist, DispatchShared& sh, int first, int end,
                            bool expertsKnown, int warp, int lane, PendingPut* put) {
  const llCommonKernelArgs& c = a.c;
  int K = c.topk;
  int token = first + warp;
  if (!expertsKnown) {
    int e = -1;
    if (token < end && lane < K) {
      int64_t v = a.topkIdx[(size_t)token * K + lane];
      if (v < -1 || v >= c.numExperts) llReportError(c, llInvalidArgument);  // skipped, never written
      else e = (int)v;
    }
    if (lane < K) sh.roundExperts[warp * K + lane] = e;
    __syncthreads();
  }
  if (warp == 0) {
    int pairs = (end - first) * K;
    for (int p0 = 0; p0 < pairs; p0 += 32) {
      int p = p0 + lane;
      int e = p < pairs ? sh.roundExperts[p] : -1;
      unsigned same = __match_any_sync(0xffffffffu, e);
      int slot = e >= 0 ? hist[e] + __popc(same & ((1u << lane) - 1)) : -1;
      __syncwarp();
      if (e >= 0 && (same >> lane) == 1u) hist[e] += __popc(same);  // the group's last lane
      if (p < pairs) sh.roundSlots[p] = slot;
      __syncwarp();
    }
  }
  __syncthreads();
  int e = token < end && lane < K ? sh.roundExperts[warp * K + lane] : -1;
  char* payload = nullptr;
  char* scales = nullptr;
  uint8_t kind = kPairNone;
  int direct = -1;
  if (e >= 0) {
    int slot = sh.roundSlots[warp * K + lane];
    if (slot >= c.maxTokens) {
      llReportError(c, llInvalidArgument);  // one source sent an expert more than N rows
    } else if (e / c.localExperts == c.rank) {
      // Own expert: its block starts at row 0, so the slot is the output row.
      size_t le = e % c.localExperts, rowsPerExpert = (size_t)c.nranks * c.maxTokens;
      direct = (int)(le * rowsPerExpert + slot);
      a.srcInfo[direct] = token;
      bool fp8 = (a.flags & LL_FP8) != 0;
      payload = static_cast<char*>(a.recvX) + (size_t)direct * (fp8 ? c.hidden : 2 * c.hidden);
      if (fp8 && (a.flags & LL_UE8M0)) {
        kind = kPairOwnUe8m0Scales;
        scales = reinterpret_cast<char*>(static_cast<int32_t*>(a.recvScales) + le * llUe8m0Words(c.hidden) * rowsPerExpert + slot);
      } else {
        kind = kPairOwnFloatScales;
        if (fp8) scales = reinterpret_cast<char*>(static_cast<float*>(a.recvScales) + le * (c.hidden / kLlQuantGroup) * rowsPerExpert + slot);
      }
    } else {
      int dstRank = e / c.localExperts;
      uint64_t offset = messageOffset(a, e, slot);
      char* dst;
      if (llIsIbgda(c, dstRank)) {
        dst = c.ownBuffer + c.sendOffset + ((size_t)token * K + lane) * a.msgBytes;
        *put = PendingPut{dstRank, dst, offset};
      } else {
        dst = c.routes[dstRank].base + offset;
      }
      llStore16(dst, make_int4(token, lane, 0, 0));
      kind = kPairMessage;
      payload = dst + kLlMsgHeaderBytes;
      scales = payload + c.hidden;  // fp8: the floats after the payload
    }
  }
  if (token < end && lane < K) a.pairRows[(size_t)token * K + lane] = direct;
  if (lane < K) sh.payload[warp][lane] = payload, sh.scales[warp][lane] = scales;
  if (lane < LL_MAX_TOPK) sh.kind[warp][lane] = kind;  // kPairNone past topk: the send loops unroll to a bound
  __syncthreads();
}

// With one rank and both phases in this launch, the layout needs nothing but the counts every block
// already has: it is written next to the payload instead of in a receive phase after it. (A send-only
// call leaves its outputs untouched until its hook runs, so it keeps the receive phase.)
__device__ __forceinline__ bool oneRankFused(const llCommonKernelArgs& c) {
  return c.nranks == 1 && (c.phases & LL_PHASE_SEND) && (c.phases & LL_PHASE_RECV);
}

// Layout of this rank's own experts from its own counts (one rank: its only source).
__device__ void writeOwnLayout(const llDispatchKernelArgs& a, const int* total) {
  const llCommonKernelArgs& c = a.c;
  for (int le = blockIdx.x * blockDim.x + threadIdx.x; le < c.localExperts; le += gridDim.x * blockDim.x) {
    int count = min(total[c.rank * c.localExperts + le], c.maxTokens);
    a.layoutRange[le] = count;  // (begin 0 << 32) | count
    a.recvCount[le] = count;
    if (a.cumulativeRecvStats) atomicAdd(&a.cumulativeRecvStats[le], count);
  }
}

// One pass over topk_idx: hist[e] = this rank's pairs for expert e of tokens before `begin` (where
// this block's slots start) and, if needTotal, total[e] = all its pairs for e. Both in shared memory;
// one atomic per pair (total is hist plus the rest, added after the pass). The experts of the block's
// first round, tokens [begin, roundEnd), are kept in sh.roundExperts on the way (-1: none or invalid,
// the latter reported), so the round's slotting does not read them again.
__device__ void countPairs(const llDispatchKernelArgs& a, int* hist, int* total, int begin, int roundEnd,
                           bool needTotal, DispatchShared* sh) {
  int E = a.c.numExperts, K = a.c.topk;
  for (int i = threadIdx.x; i < E; i += blockDim.x) hist[i] = 0, total[i] = 0;
  __syncthreads();
  // Eight loads in flight per thread before any atomic: at 1024 tokens the pass is latency-bound.
  constexpr int kUnroll = 8;
  int before = begin * K, roundPairs = roundEnd * K;
  int pairs = needTotal ? a.c.numTokens * K : roundPairs, stride = blockDim.x * kUnroll;
  for (int base = threadIdx.x; base < pairs; base += stride) {
    int64_t v[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      int i = base + j * blockDim.x;
      v[j] = i < pairs ? a.topkIdx[i] : -1;
    }
#pragma unroll
    for (int j = 0; j < kUnroll; j++) {
      int i = base + j * (int)blockDim.x;
      bool valid = v[j] >= 0 && v[j] < E;
      if (i >= before && i < roundPairs) {
        if (v[j] < -1 || v[j] >= E) llReportError(a.c, llInvalidArgument);  // skipped, never written
        sh->roundExperts[i - before] = valid ? (int)v[j] : -1;
      }
      if (valid) atomicAdd(i < before ? &hist[v[j]] : &total[v[j]], 1);
    }
  }
  __syncthreads();
  if (!needTotal) return;
  for (int i = threadIdx.x; i < E; i += blockDim.x) total[i] += hist[i];
  __syncthreads();
}

__device__ void sendPhase(const llDispatchKernelArgs& a, DispatchShared& sh, int* hist, int* total, uint64_t seq,
                          uint64_t prevOnHalf) {
  const llCommonKernelArgs& c = a.c;
  int T = c.numTokens, E = c.numExperts;
  int perBlock = max(1, (T + (int)gridDim.x - 1) / (int)gridDim.x);
  int begin = min(T, (int)blockIdx.x * perBlock), end = min(T, begin + perBlock);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int chunkChannels = (a.flags & LL_FP8) ? kChunkChannelsFp8 : kChunkChannelsBf16;
  int chunks = (c.hidden + chunkChannels - 1) / chunkChannels;
  uint64_t policy = llEvictFirstPolicy();

  // The credits guard only the writes into peers, which start with the first round: their round trip
  // overlaps the count.
  uint64_t credit = llPeekCredit(c, prevOnHalf);
  // One rank: only the blocks that write the layout need the totals (every block needs them when it
  // signals peers or receives).
  bool fused = oneRankFused(c);
  bool haveTotals = !fused || (int)(blockIdx.x * blockDim.x) < c.localExperts;
  if (begin < end || haveTotals)  // a block with no tokens (more blocks than tokens) counts only for totals
    countPairs(a, hist, total, begin, min(end, begin + kLlWarps), haveTotals, &sh);
  if (fused) writeOwnLayout(a, total);
  if (!(c.phases & LL_PHASE_RECV) && blockIdx.x == 0)  // send-only: the hook takes its own counts from here
    for (int le = threadIdx.x; le < c.localExperts; le += blockDim.x)
      a.ownCounts[le] = min(total[c.rank * c.localExperts + le], c.maxTokens);
  llAwaitCredits(c, prevOnHalf, credit);
  // Rounds of kLlWarps tokens: slots first, then every warp takes (token, chunk) units of the round,
  // so the chunks of several tokens are in flight at once.
  for (int first = begin; first < end; first += kLlWarps) {
    PendingPut put;
    assignRound(a, hist, sh, first, min(end, first + kLlWarps), first == begin, warp, lane, &put);
    int tokens = min(kLlWarps, end - first);
    if (c.topk <= 8) sendRound<8>(a, sh, first, tokens, chunks, warp, lane, policy);
    else sendRound<LL_MAX_TOPK>(a, sh, first, tokens, chunks, warp, lane, policy);
    __syncthreads();
    if (put.peer >= 0) {  // the round's messages are whole: each ibgda pair's thread posts its own
      llIbgdaFenceStaged();
      llIbgdaPut(c, put.peer, put.local, put.remoteOffset, messageUsedBytes(a));
    }
  }
  if (llLastBlock(c, &c.state->sendDone[c.half])) {
    uint32_t tag = (uint32_t)seq;
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      int dstRank = e / c.localExperts, le = e % c.localExperts;
      if (dstRank == c.rank) continue;  // own experts: counted by every block, no signal
      uint64_t count = (uint64_t)min(total[e], c.maxTokens);
      llSetPeerSignal(c, dstRank, c.dispatchSignalWord + le * c.nranks + c.rank, ((uint64_t)tag << 32) | count);
    }
    __syncthreads();  // every signal posted before the quiet that covers them
    llIbgdaQuietAll(c);
    llPublishSequence(c, seq);
  }
}

// Chunk `chunk` (32 lanes x 16 bytes of payload) of one received message into row `row` of local
// expert le; chunk 0 also carries the row's src_info and scales. Rows are split into chunks so that
// the block's warps copy in parallel instead of one warp walking a row.
__device__ void unpackChunk(const llDispatchKernelArgs& a, const char* msg, int le, int row, int chunk, int lane) {
  const llCommonKernelArgs& c = a.c;
  int H = c.hidden;
  bool fp8 = (a.flags & LL_FP8) != 0;
  size_t rowBytes = fp8 ? (size_t)H : (size_t)H * 2;
  size_t rowsPerExpert = (size_t)c.nranks * c.maxTokens;
  size_t rowIndex = (size_t)le * rowsPerExpert + row;
  const char* payload = msg + kLlMsgHeaderBytes;
  size_t v = (size_t)chunk * 32 + lane;
  if (v < rowBytes / 16)
    llStore16(static_cast<char*>(a.recvX) + rowIndex * rowBytes + v * 16, llLoad16(payload + v * 16));
  if (chunk != 0) return;
  if (lane == 0) {
    a.srcInfo[rowIndex] = reinterpret_cast<const int32_t*>(msg)[0];
    a.rowPairK[rowIndex] = (int8_t)reinterpret_cast<const int32_t*>(msg)[1];  // k < LL_MAX_TOPK: the sender's lane
  }
  if (!fp8) return;
  const float* scales = reinterpret_cast<const float*>(payload + H);
  int groups = H / kLlQuantGroup;
  if (a.flags & LL_UE8M0) {
    int words = llUe8m0Words(H);
    int32_t* packed = static_cast<int32_t*>(a.recvScales);
    for (int p = lane; p < words; p += 32) {
      uint32_t w = 0;
      for (int j = 0; j < 4 && 4 * p + j < groups; j++) w |= (uint32_t)llUe8m0Byte(scales[4 * p + j]) << (8 * j);
      packed[((size_t)le * words + p) * rowsPerExpert + row] = (int32_t)w;
    }
  } else {
    float* out = static_cast<float*>(a.recvScales);
    for (int g = lane; g < groups; g += 32) out[((size_t)le * groups + g) * rowsPerExpert + row] = scales[g];
  }
}

// Exclusive prefix sum of v[0..n) in place, v[n] = the total, by the whole block.
__device__ void blockExclusiveScan(int* v, int n) {
  __shared__ int warpSums[kLlWarps];
  int per = (n + blockDim.x - 1) / blockDim.x, first = min(n, (int)threadIdx.x * per), last = min(n, first + per);
  int mine = 0;
  for (int i = first; i < last; i++) mine += v[i];
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, inclusive = mine;
  for (int d = 1; d < 32; d <<= 1) {
    int other = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += other;
  }
  if (lane == 31) warpSums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int w = lane < kLlWarps ? warpSums[lane] : 0;
    for (int d = 1; d < 32; d <<= 1) {
      int other = __shfl_up_sync(0xffffffffu, w, d);
      if (lane >= d) w += other;
    }
    if (lane < kLlWarps) warpSums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  int running = inclusive - mine + (warp > 0 ? warpSums[warp - 1] : 0);
  for (int i = first; i < last; i++) {
    int x = v[i];
    v[i] = running;
    running += x;
  }
  if (threadIdx.x == blockDim.x - 1) v[n] = running;
  __syncthreads();
}

// The item (local expert, source) holding message m of the flat order: the last i with start[i] <= m.
__device__ __forceinline__ int itemOfMessage(const int* start, int items, int m) {
  int lo = 0, hi = items - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (start[mid] <= m) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Every block learns every item's count (this rank's own from its histogram, the others from their
// signals), so all messages form one flat list that the grid's warps copy in one pass: no block waits
// for an item while another still copies. Items are (local expert le, source) = le * R + source.
//   start[E + 1]: where each item's messages begin in the flat list (own items have none)
//   firstRow[E]:  each item's first row in the expert's output (the row order: owner, owner + 1, ...)
// total[] holds this rank's own counts: counted by this launch's send phase, or (a hook's receive
// phase) loaded here from the ones its send phase left, beside the signal reads instead of a recount.
__device__ void recvPhase(const llDispatchKernelArgs& a, int* total, int* start, int* firstRow, uint64_t seq) {
  const llCommonKernelArgs& c = a.c;
  int R = c.nranks, El = c.localExperts, items = El * R;
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint32_t tag = (uint32_t)seq;
  // Only the threads that may wait read the clock: it is slow to read.
  uint64_t waitStart = a.waitTimeStats && blockIdx.x == 0 ? llGlobalTimerNs() : 0;
  for (int i = threadIdx.x; i < items; i += blockDim.x) {
    int src = i % R, count = 0;
    if (src != c.rank) {
      count = (int)(uint32_t)llWaitTagged(c, llSignalWord(c.ownBuffer, c, c.dispatchSignalWord + i), tag);
      if (waitStart)
        atomicAdd((unsigned long long*)&a.waitTimeStats[src], (unsigned long long)(llGlobalTimerNs() - waitStart));
    } else if (!(c.phases & LL_PHASE_SEND)) {
      total[c.rank * El + i / R] = a.ownCounts[i / R];
    }
    start[i] = min(count, c.maxTokens);
  }
  __syncthreads();
  // Row order per expert: own rows first (count from the histogram), then the other sources in turn.
  for (int le = threadIdx.x; le < El; le += blockDim.x) {
    int row = 0;
    for (int p = 0; p < R; p++) {
      int src = (c.rank + p) % R, i = le * R + src;
      int count = src == c.rank ? min(total[c.rank * El + le], c.maxTokens) : start[i];
      firstRow[i] = row;
      if (blockIdx.x == 0) a.layoutRange[i] = ((int64_t)row << 32) | count;
      row += count;
    }
    if (blockIdx.x == 0) {
      a.recvCount[le] = row;
      if (a.cumulativeRecvStats) atomicAdd(&a.cumulativeRecvStats[le], row);
    }
  }
  blockExclusiveScan(start, items);
  // One flat pass: (message, 512-byte chunk) units over every warp of the grid.
  int rowBytes = (a.flags & LL_FP8) ? c.hidden : 2 * c.hidden;
  int chunks = (rowBytes / 16 + 31) / 32;
  size_t units = (size_t)start[items] * chunks;
  for (size_t u = (size_t)blockIdx.x * kLlWarps + warp; u < units; u += (size_t)gridDim.x * kLlWarps) {
    int m = (int)(u / chunks), chunk = (int)(u % chunks);
    int i = itemOfMessage(start, items, m), j = m - start[i];
    const char* msg = c.ownBuffer + c.recvOffset + ((size_t)i * c.maxTokens + j) * a.msgBytes;
    unpackChunk(a, msg, i / R, firstRow[i] + j, chunk, lane);
  }
  if (!llDefersCredits(c) && llLastBlock(c, &c.state->recvDone[c.half])) llReturnCredits(c, seq);
}

__global__ void __launch_bounds__(kLlThreads, 1) dispatchKernel(const llDispatchKernelArgs a) {
  // hist[E] (send; the receive phase's start[E + 1] after), total[E], firstRow[E]
  extern __shared__ int counts[];
  __shared__ DispatchShared sh;
  int* hist = counts;
  int* total = counts + a.c.numExperts + 1;
  int* firstRow = total + a.c.numExperts;
  uint64_t seq, prevOnHalf;
  llCallSequence(a.c, &seq, &prevOnHalf);
  llOwedCredits owed = llPeekOwedCredits(a.c);
  if (a.c.phases & LL_PHASE_SEND) sendPhase(a, sh, hist, total, seq, prevOnHalf);
  llSettleCredits(a.c, seq, owed, true);
  if ((a.c.phases & LL_PHASE_RECV) && !oneRankFused(a.c)) recvPhase(a, total, hist, firstRow, seq);
  llSettleCredits(a.c, seq, owed, false);
}

}  // namespace

cudaError_t llLaunchDispatch(const llDispatchKernelArgs& args, int blocks, cudaStream_t stream) {
  size_t smem = (3 * (size_t)args.c.numExperts + 1) * sizeof(int);
  if (smem > 48 * 1024) {
    cudaError_t err = cudaFuncSetAttribute(dispatchKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err != cudaSuccess) return err;
  }
  dispatchKernel<<<blocks, kLlThreads, smem, stream>>>(args);
  return cudaGetLastError();
}
