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

// The word at `offset` of the peer's buffer set to `value` (after everything posted to it before).
__device__ __forceinline__ void llIbgdaSignal(const llCommonKernelArgs& a, int peer, uint64_t offset, uint64_t value) {
  const llRoute& r = a.routes[peer];
  llIbgdaPostWriteInline(r.qp, &value, sizeof(value), LlMlx5Remote{r.remoteBase + offset, r.rkey});
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

// Sets the word at `offset` of the peer's buffer after this thread's (and, through a barrier, its
// block's) earlier writes to that peer: a release store (p2p) or an inline write behind them on the QP
// (ibgda). `ordered` false: a relaxed store, for a word that announces nothing this kernel wrote.
__device__ __forceinline__ void llSetPeerWord(const llCommonKernelArgs& a, int peer, uint64_t offset, uint64_t value,
                                              bool ordered = true) {
  if (llIsIbgda(a, peer)) {
    llIbgdaSignal(a, peer, offset, value);
    return;
  }
  uint64_t* word = reinterpret_cast<uint64_t*>(a.routes[peer].base + offset);
  if (ordered) llStoreRelease(word, value, a.sysScope);
  else llStoreRelaxed(word, value, a.sysScope);
}

// A signal word of this call's half in the peer's buffer.
__device__ __forceinline__ void llSetPeerSignal(const llCommonKernelArgs& a, int peer, uint32_t word, uint64_t value) {
  llSetPeerWord(a, peer, llSignalOffset(a, word), value);
}

// After this rank consumed a half: tell every peer (threads of the calling block) that it may write
// there again. `ordered`: this kernel's own reads of the half come before (a hook's last block);
// else an earlier kernel's, which the kernel boundary has ordered already.
__device__ __forceinline__ void llPostCredits(const llCommonKernelArgs& a, int half, uint64_t seq, bool ordered) {
  uint64_t offset = a.signalOffsetOfHalf[half] + (uint64_t)(a.creditWord + a.rank) * sizeof(uint64_t);
  for (int peer = threadIdx.x; peer < a.nranks; peer += blockDim.x)
    if (peer != a.rank) llSetPeerWord(a, peer, offset, seq, ordered);
}

// A receive phase that returns its own credits (a hook's, or any call's on a communicator with ibgda
// peers), by its last block: credits for this call's half, quiet before the kernel ends, so that no
// WQE outlives the call that posted it.
__device__ __forceinline__ void llReturnCredits(const llCommonKernelArgs& a, uint64_t seq) {
  llPostCredits(a, a.half, seq, true);
  llIbgdaQuietAll(a);
}

// Credits of a fused call's receive phase are returned by the next kernel on the stream (any call's,
// or a hook's), by its block 0, instead of by a grid-wide rendezvous at the end of the phase (a fence
// and an atomic in every block, then the last block's writes): the kernel boundary already orders
// every read of the half before them. In a stream of fused calls this never delays a peer: its next
// call on that half comes after its next call, whose receive waits for this rank's next kernel
// anyway. A hook keeps its own rendezvous: in an overlap schedule the next kernel may come much later,
// and a peer's send-only call would spin until then. So do communicators with ibgda peers: with
// credits posted as WQEs by block 0 after its send phase and quieted at its end, the software-mlx5
// R=4 and hybrid matrices time out every run. The model's wire first reports "transport retries
// exceeded" (a peer's responder gave no answer within 5 s), so a rank stops receiving. Quieting right
// after the post, or posting at the end, passes (docs/perf-notes.md, changes 80 and 85; why the wire
// stalls is not found).
__device__ __forceinline__ bool llDefersCredits(const llCommonKernelArgs& a) {
  return a.deferCredits && (a.phases & LL_PHASE_SEND) && (a.phases & LL_PHASE_RECV);
}

// Block 0 reads what is owed at its start (llPeekOwedCredits), then, after its send phase (or at the
// end of a hook), posts it and records what this kernel owes (llSettleCredits): no thread waits for
// the words on its way, and the stores are out long before the kernel ends.
struct llOwedCredits {
  uint64_t seq[2];  // per half: the call whose credits are owed, 0 for none
};

__device__ __forceinline__ llOwedCredits llPeekOwedCredits(const llCommonKernelArgs& a) {
  if (!a.deferCredits || a.nranks == 1 || blockIdx.x != 0 || (int)threadIdx.x >= a.nranks) return {{0, 0}};
  return {{llLoadVolatile(&a.state->creditOwed[0]), llLoadVolatile(&a.state->creditOwed[1])}};
}

// afterSend: called after the send phase (acts where there is one), else at the end (where not). A
// barrier has passed since the peek in every phase (its last-block rendezvous), so thread 0's stores
// come after every thread's read of the words.
__device__ __forceinline__ void llSettleCredits(const llCommonKernelArgs& a, uint64_t seq, const llOwedCredits& owed,
                                                bool afterSend) {
  if (!a.deferCredits || a.nranks == 1 || blockIdx.x != 0 || ((a.phases & LL_PHASE_SEND) != 0) != afterSend) return;
  for (int h = 0; h < 2; h++)
    if (owed.seq[h] != 0) llPostCredits(a, h, owed.seq[h], false);
  if (threadIdx.x == 0) {  // stores only where a word changes
    for (int h = 0; h < 2; h++) {
      uint64_t next = llDefersCredits(a) && h == a.half ? seq : 0;
      if (next != owed.seq[h]) a.state->creditOwed[h] = next;
    }
  }
}
