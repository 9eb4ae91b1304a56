// fanout_bw: the memory traffic of an fp8 dispatch with one rank, and nothing else. Each token's row
// (H bf16 values, 2H bytes) is read once and H bytes are stored to k rows of a [E][T][H]-byte output
// whose rows are picked at random per expert. The warp fan-out has the dispatch kernel's shape: 132 x
// 1024 threads, each block a contiguous share of the tokens, its warps taking (token, 512-channel)
// units (two 512-byte loads, 256 bytes a store). Variants add the fp8 scales (one float per 128
// channels and pair) as the dispatch writes them for its own rows, in the caller's [E][groups][T]
// layout (with its evict-last policy, and with the default one), or as one 16-byte store per token
// and unit (a compact [T][groups] table, which the caller cannot read). Next to them: the same rows
// moved by bulk copies (TMA), a memset of the written bytes and an empty kernel. Every timed launch
// follows ll_perf's L2 flush (reading 2 x L2, evict-last lines included), and the median of 30 is
// printed. docs/perf-notes.md compares the dispatch with it.
//
//   fanout_bw [tokens [hidden]]      (default: 1024 7168; top-8, 256 experts)
#include <stdint.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "device/common.cuh"
#include "test/perf/cuda_ck.h"
#include "test/perf/perf_kernels.h"

constexpr int kTopk = 8, kExperts = 256, kReps = 30;

enum ScaleStores { kNoScales, kScalesCallerEvictLast, kScalesCallerDefault, kScalesPerToken };

// Warp units of (token, 512-channel chunk) of the block's tokens: lane l reads 16 bytes at 16 l and
// at 512 + 16 l of the chunk's 1024 input bytes, and stores 8 bytes made from each to every target
// row (groups chunk * 4 + l / 16 and two further on, as the dispatch's lanes hold them).
__global__ void __launch_bounds__(1024, 1) fanOut(const char* x, size_t xRowBytes, char* out, float* scales,
                                                   const int* rowOf, int tokens, size_t rowBytes, int scaleStores) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, groups = (int)(rowBytes / 128);
  int per = (tokens + gridDim.x - 1) / gridDim.x, t0 = blockIdx.x * per, t1 = min(tokens, t0 + per);
  int chunks = (int)(rowBytes / 512);
  uint64_t keep = llEvictLastPolicy();
  for (int u = warp; u < (t1 - t0) * chunks; u += 32) {
    int t = t0 + u / chunks, chunk = u % chunks;
    const char* in = x + t * xRowBytes + chunk * 1024;
    int4 a = *reinterpret_cast<const int4*>(in + lane * 16), b = *reinterpret_cast<const int4*>(in + 512 + lane * 16);
    uint2 va = make_uint2(a.x ^ a.y, a.z ^ a.w), vb = make_uint2(b.x ^ b.y, b.z ^ b.w);
    int rows[kTopk];
    for (int k = 0; k < kTopk; k++) rows[k] = rowOf[t * kTopk + k];
    size_t at = (size_t)(chunk * 4 + lane / 16) * 128 + (lane % 16) * 8;
    for (int k = 0; k < kTopk; k++) {
      *reinterpret_cast<uint2*>(out + (size_t)rows[k] * rowBytes + at) = va;
      *reinterpret_cast<uint2*>(out + (size_t)rows[k] * rowBytes + at + 256) = vb;
    }
    // Lane l: the scale of group chunk * 4 + l % 4 for target l / 4 (a stand-in value, never 0).
    int g = chunk * 4 + lane % 4, row = rows[lane / 4], expert = row / tokens, slot = row % tokens;
    float v = __int_as_float((int)((va.x | 1u) & 0x3fffffffu));
    float* callerScale = scales + ((size_t)expert * groups + g) * tokens + slot;
    if (scaleStores == kScalesCallerEvictLast)
      llStore4Hint(callerScale, __float_as_uint(v), keep);
    else if (scaleStores == kScalesCallerDefault) *callerScale = v;
    else if (scaleStores == kScalesPerToken && lane < 4) scales[(size_t)t * groups + g] = v;
  }
}

// The same traffic by the bulk-copy (TMA) engine: each block copies its tokens' rows into shared
// memory (one bulk load per row, completion on an mbarrier), then one bulk store of the row's first
// H bytes per target. Shows what the memory system gives when no warp issues the stores.
__global__ void fanOutBulk(const char* x, size_t xRowBytes, char* out, const int* rowOf, int tokens,
                           size_t rowBytes) {
  extern __shared__ __align__(128) char rows[];
  __shared__ __align__(8) uint64_t loaded;
  int per = (tokens + gridDim.x - 1) / gridDim.x, t0 = blockIdx.x * per, t1 = min(tokens, t0 + per);
  if (t0 >= t1) return;
  uint32_t bar = (uint32_t)__cvta_generic_to_shared(&loaded);
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar));
    asm volatile("fence.mbarrier_init.release.cluster;");
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"((uint32_t)((t1 - t0) * xRowBytes)));
    for (int t = t0; t < t1; t++) {
      uint32_t dst = (uint32_t)__cvta_generic_to_shared(rows + (t - t0) * xRowBytes);
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(dst), "l"(x + t * xRowBytes), "r"((uint32_t)xRowBytes), "r"(bar) : "memory");
    }
  }
  __syncthreads();
  uint32_t done = 0;
  while (!done)
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar) : "memory");
  int pair = threadIdx.x;
  if (pair < (t1 - t0) * kTopk) {
    int t = t0 + pair / kTopk;
    uint32_t src = (uint32_t)__cvta_generic_to_shared(rows + (t - t0) * xRowBytes);
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;"
                 ::"l"(out + (size_t)rowOf[t * kTopk + pair % kTopk] * rowBytes), "r"(src), "r"((uint32_t)rowBytes) : "memory");
    asm volatile("cp.async.bulk.commit_group;");
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
  }
}

int main(int argc, char** argv) {
  int tokens = argc > 1 ? atoi(argv[1]) : 1024, hidden = argc > 2 ? atoi(argv[2]) : 7168;
  if (tokens < 1 || hidden < 512 || hidden % 512 != 0) {
    fprintf(stderr, "usage: fanout_bw [tokens >= 1 [hidden, a multiple of 512]]\n");
    return 2;
  }
  int device = 0, l2 = 0;
  CK(cudaGetDevice(&device));
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
  size_t flushBytes = 2 * (size_t)l2, xRowBytes = 2 * (size_t)hidden, rowBytes = hidden;
  size_t outBytes = (size_t)kExperts * tokens * rowBytes, written = (size_t)tokens * kTopk * rowBytes;
  char *x, *out, *flush;
  float* scales;
  int* rowOf;
  int4* sink;
  CK(cudaMalloc(&x, tokens * xRowBytes));
  CK(cudaMalloc(&out, outBytes));
  CK(cudaMalloc(&flush, flushBytes));
  size_t scaleBytes = (size_t)kExperts * tokens * (hidden / 128) * sizeof(float);
  CK(cudaMalloc(&scales, scaleBytes));
  CK(cudaMemset(scales, 0, scaleBytes));
  CK(cudaMalloc(&sink, sizeof(int4)));
  CK(cudaMemset(x, 1, tokens * xRowBytes));
  CK(cudaMemset(out, 0, outBytes));
  CK(cudaMemset(flush, 0, flushBytes));
  // Row of pair (t, k): its expert's next free row, experts distinct per token, as the dispatch does.
  std::vector<int> rows(tokens * kTopk), used(kExperts, 0);
  srand(1);
  for (int t = 0; t < tokens; t++)
    for (int k = 0; k < kTopk; k++) {
      int e;
      do e = rand() % kExperts;
      while (std::find(&rows[t * kTopk], &rows[t * kTopk + k], -1 - e) != &rows[t * kTopk + k]);
      rows[t * kTopk + k] = -1 - e;
    }
  for (int& r : rows) r = (-1 - r) * tokens + used[-1 - r]++;
  CK(cudaMalloc(&rowOf, rows.size() * sizeof(int)));
  CK(cudaMemcpy(rowOf, rows.data(), rows.size() * sizeof(int), cudaMemcpyHostToDevice));

  cudaEvent_t begin, end;
  CK(cudaEventCreate(&begin));
  CK(cudaEventCreate(&end));
  auto median = [&](auto launch) {
    std::vector<float> us;
    for (int i = 0; i < kReps; i++) {
      CK(llPerfLaunchReadFlush(flush, flushBytes, sink, 0));
      CK(cudaEventRecord(begin));
      launch();
      CK(cudaEventRecord(end));
      CK(cudaEventSynchronize(end));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, begin, end));
      us.push_back(ms * 1e3f);
    }
    std::sort(us.begin(), us.end());
    return us[kReps / 2];
  };
  printf("# fanout_bw: %d tokens, H %d, top-%d, %d experts: reads %.1f MB, writes %.1f MB\n", tokens, hidden, kTopk,
         kExperts, tokens * xRowBytes / 1e6, written / 1e6);
  float fan[4];
  for (int mode = kNoScales; mode <= kScalesPerToken; mode++)
    fan[mode] = median([&] { fanOut<<<132, 1024>>>(x, xRowBytes, out, scales, rowOf, tokens, rowBytes, mode); });
  int perBlock = (tokens + 131) / 132;
  size_t bulkSmem = perBlock * xRowBytes;
  float bulk = -1;
  if (bulkSmem <= 200 * 1024) {
    CK(cudaFuncSetAttribute(fanOutBulk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bulkSmem));
    bulk = median([&] { fanOutBulk<<<132, 1024, bulkSmem>>>(x, xRowBytes, out, rowOf, tokens, rowBytes); });
  }
  float set = median([&] { CK(cudaMemsetAsync(out, 3, written)); });
  float empty = median([&] { fanOut<<<132, 1024>>>(x, xRowBytes, out, scales, rowOf, 0, rowBytes, kNoScales); });
  CK(cudaGetLastError());
  printf("fan-out (tokens read once, %d stores a piece)     %8.2f us\n", kTopk, fan[kNoScales]);
  printf("  + scales, caller's layout, evict-last (dispatch) %8.2f us\n", fan[kScalesCallerEvictLast]);
  printf("  + scales, caller's layout, default L2 policy     %8.2f us\n", fan[kScalesCallerDefault]);
  printf("  + scales, one 16-byte store per token and unit   %8.2f us\n", fan[kScalesPerToken]);
  if (bulk >= 0) printf("fan-out by bulk copies (TMA)                     %8.2f us\n", bulk);
  else printf("fan-out by bulk copies (TMA)                          n/a (a block's rows exceed shared memory)\n");
  printf("memset of the written bytes                      %8.2f us\n", set);
  printf("empty kernel (same grid)                         %8.2f us\n", empty);
  return 0;
}
