// Shared by the ll_perf sources: failing loudly, and the small statistics every table needs.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llep.h"

// This process's rank, for messages (set once the launcher's environment is read).
inline int& llPerfRank() {
  static int rank = 0;
  return rank;
}

// Every failure ends the run: numbers measured after an error are not worth printing. Other ranks then
// stop at their next wait (llrun stops them at once; the library's waits are bounded).
[[noreturn]] inline void llPerfDie(const char* fmt, ...) {
  fprintf(stderr, "ll_perf rank %d: ", llPerfRank());
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(1);
}

#define PERF_CUDA(call)                                                                              \
  do {                                                                                               \
    cudaError_t perfErr_ = (call);                                                                   \
    if (perfErr_ != cudaSuccess)                                                                     \
      llPerfDie("%s failed: %s (%s:%d)", #call, cudaGetErrorString(perfErr_), __FILE__, __LINE__);   \
  } while (0)

#define PERF_LL(call)                                                                                \
  do {                                                                                               \
    llResult_t perfRes_ = (call);                                                                    \
    if (perfRes_ != llSuccess)                                                                       \
      llPerfDie("%s failed: %s: %s", #call, llGetErrorString(perfRes_), llGetLastError(nullptr));    \
  } while (0)

// Median and nearest-rank 99th percentile of samples (any order; empty gives 0).
struct llPerfStat {
  double median = 0, p99 = 0;
};

inline llPerfStat llPerfStats(std::vector<double> v) {
  llPerfStat s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  size_t rank99 = (99 * n + 99) / 100;  // ceil(0.99 n), 1-based
  s.p99 = v[std::min(n, std::max<size_t>(rank99, 1)) - 1];
  return s;
}
