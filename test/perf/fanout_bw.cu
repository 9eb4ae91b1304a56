// fanout_bw: the memory traffic of an fp8 dispatch with one rank, and nothing else. Each token's row
// (H bf16 values, 2H bytes) is read once and H bytes are stored to k rows of a [E][T][H]-byte output
// whose rows are picked at random per expert, 512 bytes per warp store, as the dispatch kernel's
// grid shape does (132 x 1024 threads by default). Next to it: the same rows moved by bulk copies
// (TMA), a memset of the same written bytes and an empty kernel. Every timed launch follows an L2 flush by reading 2 x L2 (ll_perf's default), and
// the median of 30 is printed. docs/perf-notes.md compares the dispatch with it.
//
//   fanout_bw [tokens [hidden]]      (default: 1024 7168; top-8, 256 experts)
#include <stdint.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "test/perf/cuda_ck.h"

constexpr int kTopk = 8, kExperts = 256, kReps = 30;

__global__ void readAll(const int4* buffer, size_t vecs, int4* sink) {
  int4 acc = make_int4(0, 0, 0, 0);
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < vecs; i += (size_t)gridDim.x * blockDim.x) {
    int4 v = buffer[i];
    acc.x ^= v.x, acc.y ^= v.y;
  }
  if (acc.x == 0x5eed1e55 && acc.y == -1) *sink = acc;  // never: keeps the loads
}

// Warp units of (token, 512-byte output piece): each lane reads 32 bytes of the row (16 bf16 values,
// the whole row is read once) and stores 16 bytes made from them to the token's kTopk rows.
__global__ void fanOut(const char* x, size_t xRowBytes, char* out, const int* rowOf, int tokens, size_t rowBytes) {
  int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  int warps = gridDim.x * blockDim.x / 32;
  size_t pieces = rowBytes / 512;
  for (size_t u = warp; u < (size_t)tokens * pieces; u += warps) {
    size_t t = u / pieces, p = u % pieces;
    const int4* in = reinterpret_cast<const int4*>(x + t * xRowBytes + p * 1024 + lane * 32);
    int4 a = in[0], b = in[1];
    int4 v = make_int4(a.x ^ b.x, a.y ^ b.y, a.z ^ b.z, a.w ^ b.w);
    for (int k = 0; k < kTopk; k++)
      *reinterpret_cast<int4*>(out + (size_t)rowOf[t * kTopk + k] * rowBytes + p * 512 + lane * 16) = v;
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
  int* rowOf;
  int4* sink;
  CK(cudaMalloc(&x, tokens * xRowBytes));
  CK(cudaMalloc(&out, outBytes));
  CK(cudaMalloc(&flush, flushBytes));
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
      readAll<<<528, 512>>>(reinterpret_cast<const int4*>(flush), flushBytes / 16, sink);
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
  float fan = median([&] { fanOut<<<132, 1024>>>(x, xRowBytes, out, rowOf, tokens, rowBytes); });
  int perBlock = (tokens + 131) / 132;
  size_t bulkSmem = perBlock * xRowBytes;
  float bulk = -1;
  if (bulkSmem <= 200 * 1024) {
    CK(cudaFuncSetAttribute(fanOutBulk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bulkSmem));
    bulk = median([&] { fanOutBulk<<<132, 1024, bulkSmem>>>(x, xRowBytes, out, rowOf, tokens, rowBytes); });
  }
  float set = median([&] { CK(cudaMemsetAsync(out, 3, written)); });
  float empty = median([&] { fanOut<<<132, 1024>>>(x, xRowBytes, out, rowOf, 0, rowBytes); });
  CK(cudaGetLastError());
  printf("fan-out (read once, %d stores per 16 bytes)  %8.2f us\n", kTopk, fan);
  if (bulk >= 0) printf("fan-out by bulk copies (TMA)                %8.2f us\n", bulk);
  else printf("fan-out by bulk copies (TMA)                     n/a (a block's rows exceed shared memory)\n");
  printf("memset of the written bytes                 %8.2f us\n", set);
  printf("empty kernel (same grid)                    %8.2f us\n", empty);
  return 0;
}
