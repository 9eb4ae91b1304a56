// peer_store_bw: how fast SM stores reach another GPU's memory, next to the same stores into local memory.
// One kernel per GPU (grid-stride 16-byte copies, each thread ending with a system fence, as a dispatch or
// combine send phase ends), GPU 0 alone or GPUs 0 and 1 at once (both directions), 1 MB to 256 MB.
// Prints the best of 8 timed runs (events on GPU 0). Needs two GPUs with peer access.
//
//   peer_store_bw [blocks [threads]]      (default: 132 1024)
#include "test/perf/cuda_ck.h"

__global__ void push(int4* dst, const int4* src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = src[i];
  __threadfence_system();
}

int main(int argc, char** argv) {
  int blocks = argc > 1 ? atoi(argv[1]) : 132, threads = argc > 2 ? atoi(argv[2]) : 1024;
  int gpus = 0;
  CK(cudaGetDeviceCount(&gpus));
  if (gpus < 2) {
    printf("peer_store_bw: needs two GPUs (found %d)\n", gpus);
    return 77;
  }
  const size_t maxBytes = size_t(256) << 20;
  void *src[2], *dst[2];
  cudaStream_t stream[2];
  cudaEvent_t begin[2], end[2];
  for (int g = 0; g < 2; g++) {
    CK(cudaSetDevice(g));
    CK(cudaDeviceEnablePeerAccess(1 - g, 0));
    CK(cudaMalloc(&src[g], maxBytes));
    CK(cudaMalloc(&dst[g], maxBytes));
    CK(cudaStreamCreate(&stream[g]));
    CK(cudaEventCreate(&begin[g]));
    CK(cudaEventCreate(&end[g]));
  }
  printf("# blocks %d, threads %d; best of 8 runs\n# %-6s %-5s %10s %10s %9s\n", blocks, threads, "target", "gpus",
         "MB", "us", "GB/s");
  for (size_t bytes = size_t(1) << 20; bytes <= maxBytes; bytes *= 4)
    for (int remote = 0; remote < 2; remote++)
      for (int both = 0; both < 2; both++) {
        float best = 1e30f;
        for (int run = 0; run < 10; run++) {
          for (int g = 0; g <= both; g++) {
            CK(cudaSetDevice(g));
            CK(cudaEventRecord(begin[g], stream[g]));
            push<<<blocks, threads, 0, stream[g]>>>(static_cast<int4*>(dst[remote ? 1 - g : g]),
                                                    static_cast<const int4*>(src[g]), bytes / 16);
            CK(cudaGetLastError());
            CK(cudaEventRecord(end[g], stream[g]));
          }
          for (int g = 0; g <= both; g++) {
            CK(cudaSetDevice(g));
            CK(cudaStreamSynchronize(stream[g]));
          }
          float ms = 0;
          CK(cudaSetDevice(0));
          CK(cudaEventElapsedTime(&ms, begin[0], end[0]));
          if (run >= 2 && ms < best) best = ms;
        }
        printf("  %-6s %-5s %10.1f %10.2f %9.1f\n", remote ? "peer" : "local", both ? "both" : "one", bytes / 1e6,
               best * 1e3, bytes / (best * 1e6));
      }
  return 0;
}
