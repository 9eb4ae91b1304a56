// Device-side memory-ordering primitives shared by kernels and transports.
// The protocol's ordering rule: a signal stored with release after the data it announces is seen by
// a reader that loads it with acquire only after that data (sys scope: the reader may be another
// process on this GPU or a peer GPU).
#pragma once

#include <stdint.h>

// Scope: .gpu when every peer shares this GPU (other processes on it included), .sys when a peer is
// another GPU (NVLink/PCIe): the cheaper scope is enough whenever it covers every reader.
__device__ __forceinline__ void llStoreRelease(uint64_t* p, uint64_t v, bool sys = true) {
  if (sys) asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  else asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t llLoadAcquire(const uint64_t* p, bool sys = true) {
  uint64_t v;
  if (sys) asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  else asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// A plain observation (no ordering of its own): an acquire once a fence follows it.
__device__ __forceinline__ uint64_t llLoadRelaxed(const uint64_t* p, bool sys = true) {
  uint64_t v;
  if (sys) asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  else asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// A plain store (no ordering of its own) that readers at the scope still observe.
__device__ __forceinline__ void llStoreRelaxed(uint64_t* p, uint64_t v, bool sys = true) {
  if (sys) asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  else asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ void llFence(bool sys) {
  if (sys) __threadfence_system();
  else __threadfence();
}

// Nanoseconds of the GPU's global timer (same clock on every SM), for bounded waits.
__device__ __forceinline__ uint64_t llGlobalTimerNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

