// Device-side memory-ordering primitives shared by kernels and transports.
// The protocol's ordering rule: a signal stored with release after the data it announces is seen by
// a reader that loads it with acquire only after that data (sys scope: the reader may be another
// process on this GPU or a peer GPU).
#pragma once

#include <stdint.h>

__device__ __forceinline__ void llStoreRelease(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t llLoadAcquire(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Nanoseconds of the GPU's global timer (same clock on every SM), for bounded waits.
__device__ __forceinline__ uint64_t llGlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
