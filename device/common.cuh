// Device helpers shared by the dispatch and combine kernels: errors, bounded waits, the "last block"
// rendezvous, signal addresses.
#pragma once

#include <stdint.h>

#include "device/kernel_args.h"
#include "device/primitives.cuh"
#include "llep.h"

constexpr int kLlThreads = 1024;
constexpr int kLlWarps = kLlThreads / 32;

// Records the first error of the communicator; later ones are dropped. Kernels go on after an error
// (skipping the bad work) so every rank still completes: they never trap.
__device__ __forceinline__ void llReportError(const llCommonKernelArgs& a, int code) {
  if (atomicCAS(&a.state->error, 0, code) == 0) a.asyncError->code = code;
}

// An error CQE on the QP to `peer`: its details reach the host before the code that makes it look.
__device__ __forceinline__ void llReportQpError(const llCommonKernelArgs& a, int peer, uint32_t syndrome,
                                                uint32_t wqeCounter) {
  if (atomicCAS(&a.state->error, 0, llRemoteError) != 0) return;
  a.asyncError->peer = peer;
  a.asyncError->syndrome = syndrome;
  a.asyncError->wqeCounter = wqeCounter;
  __threadfence_system();
  a.asyncError->code = llRemoteError;
}

__device__ __forceinline__ bool llErrorSeen(const llCommonKernelArgs& a) {
  return *(volatile int32_t*)&a.state->error != 0;
}

__device__ __forceinline__ uint64_t* llSignalWord(char* buffer, const llCommonKernelArgs& a, uint32_t word) {
  return reinterpret_cast<uint64_t*>(buffer + a.signalOffset) + word;
}

// Waits until the word's upper 32 bits equal tag (the call's sequence number); returns the value,
// or reports llTimeout and returns 0 after timeoutNs of waiting. Returns at once after an earlier
// error, so one lost peer costs one timeout, not one per wait. The clock is read only once a wait
// has actually begun: %globaltimer reads are slow, and 135k threads reading it at kernel entry cost
// microseconds.
__device__ __forceinline__ uint64_t llWaitTagged(const llCommonKernelArgs& a, const uint64_t* word, uint32_t tag) {
  uint64_t deadline = 0;
  while (true) {
    uint64_t v = llLoadAcquire(word, a.sysScope);
    if ((uint32_t)(v >> 32) == tag) return v;
    if (llErrorSeen(a)) return 0;
    uint64_t now = llGlobalTimerNs();
    if (deadline == 0) deadline = now + a.timeoutNs;
    if (now > deadline) {
      llReportError(a, llTimeout);
      return 0;
    }
  }
}

// Waits until a credit word reaches at least seq (the peer consumed that call on this half).
__device__ __forceinline__ void llWaitCredit(const llCommonKernelArgs& a, const uint64_t* word, uint64_t seq) {
  uint64_t deadline = 0;
  while (llLoadAcquire(word, a.sysScope) < seq) {
    if (llErrorSeen(a)) return;
    uint64_t now = llGlobalTimerNs();
    if (deadline == 0) deadline = now + a.timeoutNs;
    if (now > deadline) {
      llReportError(a, llTimeout);
      return;
    }
  }
}

// True in every thread of the block that arrives last; the counter is reset for the next call (all
// other blocks are past it). The barrier makes the block's writes visible to thread 0, whose
// (cumulative) fence then orders them before its arrival; the last block's fence after the counter
// orders every block's writes before what it does next. One fence per block, not per thread.
// A communicator of one rank has nothing to signal and no credits to return: no block is last.
__device__ __forceinline__ bool llLastBlock(const llCommonKernelArgs& a, uint32_t* counter) {
  __shared__ bool last;
  if (a.nranks == 1) return false;
  __syncthreads();
  if (threadIdx.x == 0) {
    llFence(a.sysScope);
    uint32_t old = atomicAdd(counter, 1u);
    last = old == gridDim.x - 1;
    if (last) {
      *counter = 0;
      llFence(a.sysScope);
    }
  }
  __syncthreads();
  return last;
}

// Sequence number of this call, and of the previous call on this half (credits are owed for it).
// One thread per block reads them: every thread of the grid reading the same two words at entry
// queues ~4000 requests on one L2 slice, microseconds before the first useful load (the block's
// barrier costs ~0.1 us).
__device__ __forceinline__ void llCallSequence(const llCommonKernelArgs& a, uint64_t* seq, uint64_t* prevOnHalf) {
  __shared__ uint64_t words[2];
  if (a.nranks == 1) {  // nothing to wait for or publish: one rank never reads its sequence
    *seq = 0, *prevOnHalf = 0;
    return;
  }
  if (threadIdx.x == 0) {
    if (a.phases & LL_PHASE_SEND) {
      words[0] = *(volatile uint64_t*)&a.state->seq + 1;
      words[1] = *(volatile uint64_t*)&a.state->halfSeq[a.half];
    } else {
      words[0] = *(volatile uint64_t*)&a.state->halfSeq[a.half];
      words[1] = 0;
    }
  }
  __syncthreads();
  *seq = words[0];
  *prevOnHalf = words[1];
}

// Credit of peer threadIdx.x, read early so that its round trip overlaps other work (the dispatch's
// count): a relaxed load, which llAwaitCredits turns into an acquire. ~0 where there is nothing to read.
__device__ __forceinline__ uint64_t llPeekCredit(const llCommonKernelArgs& a, uint64_t prevOnHalf) {
  int peer = threadIdx.x;
  if (a.nranks == 1 || prevOnHalf == 0 || peer >= a.nranks || peer == a.rank) return ~0ull;
  return llLoadRelaxed(llSignalWord(a.ownBuffer, a, a.creditWord + peer), a.sysScope);
}

// Before the first write into a peer's half: the peer has consumed what was last sent there. A
// credit peeked already (llPeekCredit) that suffices needs only the fence that orders the writes
// after it; any other is waited for.
__device__ __forceinline__ void llAwaitCredits(const llCommonKernelArgs& a, uint64_t prevOnHalf, uint64_t peeked = 0) {
  if (a.nranks == 1) return;  // nothing but this rank writes into its own halves
  if (prevOnHalf == 0) return;
  for (int peer = threadIdx.x; peer < a.nranks; peer += blockDim.x) {
    if (peer == a.rank) continue;
    if (peer == (int)threadIdx.x && peeked >= prevOnHalf) llFence(a.sysScope);
    else llWaitCredit(a, llSignalWord(a.ownBuffer, a, a.creditWord + peer), prevOnHalf);
  }
  __syncthreads();
}

// The last block of a phase: this call is now the latest on its half.
__device__ __forceinline__ void llPublishSequence(const llCommonKernelArgs& a, uint64_t seq) {
  if (threadIdx.x == 0) {
    a.state->seq = seq;
    a.state->halfSeq[a.half] = seq;
  }
}

// 16-byte vector copies.
__device__ __forceinline__ int4 llLoad16(const void* p) { return *reinterpret_cast<const int4*>(p); }
__device__ __forceinline__ void llStore16(void* p, int4 v) { *reinterpret_cast<int4*>(p) = v; }

// Bytes a call reads for the last time (the expert rows combine reduces, the tokens dispatch
// quantises): the L2 replaces these lines first, so a call that streams more than the L2 holds
// recycles its own dead lines instead of evicting what else the L2 holds (its own output, which the
// next kernel reads). Not kept in L1. Outputs keep the normal policy for that reason, or evict-last
// where their lines are written a few bytes at a time (llStore4Hint).
__device__ __forceinline__ uint64_t llEvictFirstPolicy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

__device__ __forceinline__ int4 llLoad16Once(const void* p, uint64_t policy) {
  int4 v;
  asm volatile("ld.global.L1::no_allocate.L2::cache_hint.v4.s32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p), "l"(policy));
  return v;
}

// Lines to keep while the rest streams past: the L2 replaces them last.
__device__ __forceinline__ uint64_t llEvictLastPolicy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// 4 bytes under an L2 policy.
__device__ __forceinline__ void llStore4Hint(void* p, uint32_t v, uint64_t policy) {
  asm volatile("st.global.L2::cache_hint.b32 [%0], %1, %2;" ::"l"(p), "r"(v), "l"(policy) : "memory");
}

