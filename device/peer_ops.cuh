// How kernels reach a peer's buffer. p2p: plain stores into the mapped buffer, signals with release stores.
// ibgda: what they stage in their own buffer goes to the same offset of the peer's buffer as one RDMA write
// per message or row; signals and credits are 8-byte inline writes posted after the data on the same QP,
// so RC ordering delivers them after it (ibgda_qp.h posts).
#pragma once

#include "device/common.cuh"
#include "transport/ibgda/ibgda_qp.h"

__device__ __forceinline__ bool llIsIbgda(const llCommonKernelArgs& a, int peer) {
  return a.routes[peer].type == LL_ROUTE_IBGDA;
}

// Byte offset of a signal word inside any rank's buffer (the layout is the same everywhere).
__device__ __forceinline__ uint64_t llSignalOffset(const llCommonKernelArgs& a, uint32_t word) {
  return a.signalOffset + (uint64_t)word * sizeof(uint64_t);
}

// RDMA write of `len` bytes at `local` (inside this rank's buffer) to `remoteOffset` in the peer's buffer.
// The caller has fenced the bytes it wrote there (llIbgdaFenceStaged).
__device__ __forceinline__ void llIbgdaPut(const llCommonKernelArgs& a, int peer, const void* local, uint64_t remoteOffset,
                                           uint32_t len) {
  const llRoute& r = a.routes[peer];
  llIbgdaPostWrite(r.qp, LlMlx5Local{(uint64_t)local, r.lkey}, len, LlMlx5Remote{r.remoteBase + remoteOffset, r.rkey});
}

// A signal word of the peer's buffer set to `value` (after everything posted to it before).
__device__ __forceinline__ void llIbgdaSignal(const llCommonKernelArgs& a, int peer, uint32_t word, uint64_t value) {
  const llRoute& r = a.routes[peer];
  llIbgdaPostWriteInline(r.qp, &value, sizeof(value), LlMlx5Remote{r.remoteBase + llSignalOffset(a, word), r.rkey});
}

// Staged bytes written by this block (ordered to this thread by a preceding __syncthreads) are visible to
// the NIC before the doorbell that makes it read them.
__device__ __forceinline__ void llIbgdaFenceStaged() { __threadfence_system(); }

// Waits until everything posted to the peer has completed; an error CQE becomes the communicator's
// async error, naming the peer and the syndrome.
__device__ __forceinline__ void llIbgdaQuietPeer(const llCommonKernelArgs& a, int peer) {
  LlIbgdaQp* qp = a.routes[peer].qp;
  uint32_t syndrome = llIbgdaQuiet(qp);
  if (syndrome != 0) llReportQpError(a, peer, syndrome, llLoadVolatile(&qp->errWqeCounter));
}

// Every ibgda peer quiet, one thread per peer (the calling block's threads).
__device__ __forceinline__ void llIbgdaQuietAll(const llCommonKernelArgs& a) {
  for (int peer = threadIdx.x; peer < a.nranks; peer += blockDim.x)
    if (llIsIbgda(a, peer)) llIbgdaQuietPeer(a, peer);
}

// Sets a signal word of the peer's buffer after this thread's (and, through a barrier, its block's)
// earlier writes to that peer: a release store (p2p) or an inline write behind them on the QP (ibgda).
__device__ __forceinline__ void llSetPeerSignal(const llCommonKernelArgs& a, int peer, uint32_t word, uint64_t value) {
  if (llIsIbgda(a, peer)) llIbgdaSignal(a, peer, word, value);
  else llStoreRelease(llSignalWord(a.routes[peer].base, a, word), value, a.sysScope);
}

// After this rank consumed the half: tell every peer it may write here again. ibgda credits are quiet
// before the kernel ends, so no WQE outlives the call that posted it.
__device__ __forceinline__ void llReturnCredits(const llCommonKernelArgs& a, uint64_t seq) {
  for (int peer = threadIdx.x; peer < a.nranks; peer += blockDim.x)
    if (peer != a.rank) llSetPeerSignal(a, peer, a.creditWord + a.rank, seq);
  llIbgdaQuietAll(a);
}
