// Atomics, volatile accesses and fences for code that posts to an mlx5 QP from a CUDA kernel and, in CPU
// tests against the software NIC model, from host threads. Each helper has one device body (CUDA intrinsics)
// and one host body (GCC __atomic builtins), so ibgda_qp.h is written once for both.
//
// Host mapping: every access to a word that other threads or the NIC model also touch goes through
// llLoadVolatile / llStoreVolatile (relaxed atomics, so the C++ memory model sees no data race), and the
// ordering comes from the explicit fences, as it does on the GPU (volatile accesses + __threadfence*).
#pragma once

#include <sched.h>
#include <stdint.h>
#include <time.h>

#include "device/hd.h"

// Returns the previous value. Relaxed: callers that need ordering add a fence.
LL_HD inline uint64_t llAtomicAdd64(uint64_t* p, uint64_t v) {
#ifdef __CUDA_ARCH__
  return atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
#else
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#endif
}

// Returns the value found (== expected when the swap happened). Relaxed, like llAtomicAdd64.
LL_HD inline uint32_t llAtomicCas32(uint32_t* p, uint32_t expected, uint32_t desired) {
#ifdef __CUDA_ARCH__
  return atomicCAS(reinterpret_cast<unsigned int*>(p), expected, desired);
#else
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return expected;
#endif
}

// A load the compiler may neither cache nor elide: words written by other threads or by the NIC.
template <typename T>
LL_HD inline T llLoadVolatile(const T* p) {
#ifdef __CUDA_ARCH__
  return *static_cast<const volatile T*>(p);
#else
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}

// A store that is performed exactly once, in program order relative to fences: doorbells, counters.
template <typename T>
LL_HD inline void llStoreVolatile(T* p, T v) {
#ifdef __CUDA_ARCH__
  *static_cast<volatile T*>(p) = v;
#else
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
#endif
}

// Later loads and stores are not performed before earlier loads (after seeing a flag, read what it covers).
LL_HD inline void llFenceAcquire() {
#ifdef __CUDA_ARCH__
  __threadfence();
#else
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

// Earlier loads and stores are performed before later stores (write the data, then the flag).
LL_HD inline void llFenceRelease() {
#ifdef __CUDA_ARCH__
  __threadfence();
#else
  __atomic_thread_fence(__ATOMIC_RELEASE);
#endif
}

// Both of the above in one fence (a GPU pays for one __threadfence instead of two).
LL_HD inline void llFenceAcqRel() {
#ifdef __CUDA_ARCH__
  __threadfence();
#else
  __atomic_thread_fence(__ATOMIC_ACQ_REL);
#endif
}

// Orders everything before against everything after for every observer, the NIC and MMIO writes included.
LL_HD inline void llFenceSystem() {
#ifdef __CUDA_ARCH__
  __threadfence_system();
#else
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

// A kernel that must never hang (a test against a device that may stop answering) may define
// LL_IBGDA_DEVICE_SPIN_HOOK() before including this header: a statement that every spin loop of ibgda_qp.h
// runs on each pause, and that may end the thread once a deadline has passed. Device code only, so the
// host functions are the same in every translation unit.
#ifndef LL_IBGDA_DEVICE_SPIN_HOOK
#define LL_IBGDA_DEVICE_SPIN_HOOK() ((void)0)
#endif

// Nanoseconds of a monotonic clock: the GPU's global timer, or CLOCK_MONOTONIC on the host.
LL_HD inline uint64_t llClockNs() {
#ifdef __CUDA_ARCH__
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
#else
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#endif
}

// A short back-off inside spin loops: frees the issue slot on the GPU, the core on the host (CPU tests run
// more spinning threads than cores).
LL_HD inline void llPause() {
#ifdef __CUDA_ARCH__
  LL_IBGDA_DEVICE_SPIN_HOOK();
  __nanosleep(32);
#else
  sched_yield();
#endif
}
