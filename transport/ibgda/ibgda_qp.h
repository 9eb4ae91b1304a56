// The GPU-initiated send path of one mlx5 RC QP: reserve WQE slots, write a WQE with the mlx5_wqe.h encoders,
// publish it (doorbell record, then BlueFlame), poll the QP's send CQ to free slots, and quiet. Written once
// for CUDA kernels and host code (CPU tests drive the software NIC model with it); any number of threads may
// post to one QP at once.
//
// Counters. resvHead, readyHead and consumed count WQEBBs since the QP was created and never wrap (64 bits);
// the hardware sees their low 16 bits (wqe_index, the doorbell record, a CQE's wqe_counter). At all times
//   consumed <= readyHead <= resvHead   and   (end of any reserved WQE) - consumed <= ring size,
// so a WQEBB is written only once the NIC has finished with its previous WQE, and the NIC is never rung
// with a producer more than a ring ahead of what it has executed.
//
// Completions (why reserve cannot deadlock, why the CQ cannot overrun). With R = 2^logSqBbs WQEBBs and
// Q = R / 4, a WQE asks for a CQE (CQ_UPDATE) exactly when it covers the last WQEBB of a quarter, i.e. when
// its end crosses a multiple of Q; quiet adds a signaled NOP when the last published WQE asked for none.
// Requester CQEs come in WQE order, so one CQE frees every WQEBB up to the end of its WQE.
//   - No deadlock: a reserver of [h, h + n), n <= 2, needs consumed >= h + n - R. The WQE covering the last
//     WQEBB of the quarter that holds index h + n - R - 1 is signaled and starts below h (it covers an index
//     <= h + n - R - 1 + Q - 1 < h, as n + Q - 2 < R). Every WQE below h was reserved earlier and waits only
//     for space that WQEs further below free, so by induction they are all published and that CQE comes.
//   - No CQ overrun: a CQE not yet polled belongs to a WQE at or past `consumed`, and at most R WQEs lie in
//     [consumed, resvHead); so a CQ of at least R entries (logCqSize >= logSqBbs) never holds more.
// Errors: an error CQE moves the QP to ERR; the NIC then completes every later WQE with a flush error CQE,
// so space keeps freeing and quiet still returns. The first error's syndrome stays in the QP (sticky) until
// the host resets the QP and this struct.
//
// A NIC that stops answering altogether (no CQE ever comes) must not hang the GPU: with spinTimeoutNs set,
// a wait that outlives it marks the QP stalled, and from then on every wait on the QP returns at once
// (reserve hands out its slots unchecked, publish rings nothing, quiet reports kLlIbgdaSyndStalled). A
// stalled QP is dead: the host must tear it down.
//
// Ordering of a publish (one thread at a time, in reservation order, through readyHead):
//   WQE stores -> fence (gpu) -> doorbell record -> fence (sys) -> BlueFlame -> fence (sys) -> readyHead.
// The first fence makes the WQE visible before the NIC can learn of it from the record; the second makes the
// record (which the NIC reads on a doorbell) visible before the doorbell; the third keeps this doorbell and
// record ahead of the next publisher's, so neither goes backwards. The next publisher loads readyHead and
// fences before its own record store, which therefore also covers this WQE (fence cumulativity).
#pragma once

#include <stdint.h>

#include "transport/ibgda/ibgda_sync.h"
#include "transport/ibgda/mlx5_cqe.h"
#include "transport/ibgda/mlx5_wqe.h"

// One RC QP as the GPU sees it. The host fills the first block and zeroes the rest; the struct lives in
// memory every posting thread can reach (GPU memory for kernels) and is only touched through the functions
// below.
struct LlIbgdaQp {
  uint8_t* sq;          // the send queue: 2^logSqBbs WQEBBs, 64-byte aligned
  uint32_t logSqBbs;    // 2..15: quarters of at least one WQEBB; the 16-bit counter tells full from empty
  uint32_t qpn;
  uint32_t* sqDbrec;    // the QP's doorbell record; word kLlMlx5SqDbrIndex holds the be32 producer counter
  uint64_t* bf;         // the BlueFlame register (8-byte stores)
  uint8_t* cq;          // this QP's own send CQ: 2^logCqSize CQEs, op_own set to kLlMlx5CqeInvalid << 4
  uint32_t logCqSize;   // >= logSqBbs (see "No CQ overrun" above)
  uint32_t* cqDbrec;    // word kLlMlx5CqDbrSetCiIndex holds the be32 consumer index
  uint64_t spinTimeoutNs;  // bound on any one wait (0: none); see "A NIC that stops answering" above

  uint64_t resvHead;      // WQEBBs reserved
  uint64_t readyHead;     // WQEBBs published (doorbell rung), in order
  uint64_t consumed;      // WQEBBs whose WQEs completed (freed by CQ polling)
  uint64_t signaledHead;  // end of the last published WQE that asked for a CQE
  uint32_t cqConsumer;    // CQ consumer index; written by the poll-lock holder only
  uint32_t pollLock;      // 1 while a thread polls the CQ
  uint32_t errSyndrome;   // the first error CQE's syndrome (kLlMlx5Synd*), 0 while none
  uint32_t errWqeCounter; // and its wqe_counter, which names the failed WQE
  uint32_t stalled;       // 1 once a wait outlived spinTimeoutNs
};

// What quiet returns for a stalled QP: above every 8-bit mlx5 syndrome.
constexpr uint32_t kLlIbgdaSyndStalled = 0x100;

// Whether a spin loop may go on: not once the QP is stalled, nor past spinTimeoutNs from the loop's first
// round (*deadline starts at 0), which stalls the QP.
LL_HD inline bool llIbgdaKeepSpinning(LlIbgdaQp* qp, uint64_t* deadline) {
  if (llLoadVolatile(&qp->stalled)) return false;
  if (qp->spinTimeoutNs == 0) return true;
  const uint64_t now = llClockNs();
  if (*deadline == 0) *deadline = now + qp->spinTimeoutNs;
  if (now < *deadline) return true;
  llStoreVolatile(&qp->stalled, 1u);
  return false;
}

LL_HD inline uint32_t llIbgdaSqBbs(const LlIbgdaQp* qp) { return 1u << qp->logSqBbs; }

LL_HD inline void* llIbgdaSlot(const LlIbgdaQp* qp, uint64_t wqeBb) {
  return llMlx5SqSlot(qp->sq, qp->logSqBbs, static_cast<uint32_t>(wqeBb));
}

// CQ_UPDATE when the WQE [first, first + n) ends at or past a multiple of a quarter ring (see above).
LL_HD inline uint8_t llIbgdaCompletionFlags(const LlIbgdaQp* qp, uint64_t first, uint32_t n) {
  const uint32_t quarterShift = qp->logSqBbs - 2;
  return ((first + n) >> quarterShift) != (first >> quarterShift) ? kLlMlx5CtrlCqUpdate : 0;
}

// WQEBBs of the WQE at wqe_counter `wqeIdx`, from its ctrl segment's ds (byte 7). Its slot still holds it:
// nothing at or past `consumed` is rewritten.
LL_HD inline uint32_t llIbgdaWqeBbsAt(const LlIbgdaQp* qp, uint16_t wqeIdx) {
  const uint8_t* ctrl = static_cast<const uint8_t*>(llIbgdaSlot(qp, wqeIdx));
  return llMlx5DsToWqeBbs(llLoadVolatile(ctrl + 7) & kLlMlx5DsMask);  // written by another thread, maybe another SM
}

// A CQE as the NIC wrote it, read with volatile loads: a kernel must never parse a stale copy of the slot
// that the previous lap of the ring left in its L1.
LL_HD inline LlMlx5Cqe llIbgdaReadCqe(const uint8_t* cqe) {
  uint32_t words[kLlMlx5CqeBytes / 4];
  for (uint32_t i = 0; i < kLlMlx5CqeBytes / 4; i++) words[i] = llLoadVolatile(reinterpret_cast<const uint32_t*>(cqe) + i);
  return llMlx5ParseCqe(words);
}

// Keeps the first error only; the counter is stored before the syndrome that readers test.
LL_HD inline void llIbgdaRecordError(LlIbgdaQp* qp, const LlMlx5Cqe& cqe) {
  if (llLoadVolatile(&qp->errSyndrome)) return;
  llStoreVolatile(&qp->errWqeCounter, static_cast<uint32_t>(cqe.wqeCounter));
  llFenceRelease();
  llStoreVolatile(&qp->errSyndrome, static_cast<uint32_t>(cqe.syndrome));
}

// Consumes every ready CQE: advances the consumer index and the CQ doorbell record, and moves `consumed` to
// the end of the last completed WQE (its wqe_counter is the low 16 bits of its first WQEBB, which lies in
// [consumed, consumed + R), R <= 2^15). One poller at a time; a thread that finds another polling returns at
// once (the other frees the space). Returns the QP's first error syndrome (sticky), 0 while none; the caller
// turns it into an async error naming the peer.
LL_HD inline uint32_t llIbgdaPollCq(LlIbgdaQp* qp) {
  if (llAtomicCas32(&qp->pollLock, 0, 1) != 0) return llLoadVolatile(&qp->errSyndrome);
  llFenceAcquire();
  const uint32_t start = qp->cqConsumer;
  uint32_t ci = start;
  uint64_t consumed = qp->consumed;
  for (;;) {
    const uint8_t* cqe = static_cast<const uint8_t*>(llMlx5CqeAt(qp->cq, qp->logCqSize, ci));
    if (!llMlx5CqeSwOwned(llLoadVolatile(cqe + kLlMlx5CqeOpOwnOffset), ci, qp->logCqSize)) break;
    llFenceAcquire();  // the rest of the CQE was written before its owner bit
    const LlMlx5Cqe c = llIbgdaReadCqe(cqe);
    if (llMlx5CqeIsError(c.opcode)) llIbgdaRecordError(qp, c);
    consumed += static_cast<uint16_t>(c.wqeCounter - static_cast<uint16_t>(consumed));
    consumed += llIbgdaWqeBbsAt(qp, c.wqeCounter);
    ++ci;
  }
  if (ci != start) {
    qp->cqConsumer = ci;
    // Our reads of the CQEs (and the NIC's of the WQEs, seen through them) come before the NIC may reuse
    // those CQEs and before any thread rewrites the freed WQEBBs.
    llFenceRelease();
    llStoreVolatile(&qp->cqDbrec[kLlMlx5CqDbrSetCiIndex], llMlx5CqDbrValue(ci));
    llStoreVolatile(&qp->consumed, consumed);
  }
  llFenceRelease();
  llStoreVolatile(&qp->pollLock, 0u);
  return llLoadVolatile(&qp->errSyndrome);
}

// Takes nWqebb (1 or 2) consecutive WQEBBs and returns the first one's counter. Slots are taken at once, in
// order, then waited for: the thread polls the CQ until the NIC is done with the WQEs that held them.
LL_HD inline uint64_t llIbgdaReserve(LlIbgdaQp* qp, uint32_t nWqebb) {
  const uint64_t first = llAtomicAdd64(&qp->resvHead, nWqebb);
  const uint64_t end = first + nWqebb;
  uint64_t deadline = 0;
  while (end - llLoadVolatile(&qp->consumed) > llIbgdaSqBbs(qp) && llIbgdaKeepSpinning(qp, &deadline)) {
    llIbgdaPollCq(qp);
    llPause();
  }
  llFenceAcquire();  // the slot's previous WQE was read by the NIC before we overwrite it
  return first;
}

// Rings the doorbell for the WQE [first, first + n) once every earlier WQE has been published (in-order
// publication keeps the doorbell record and BlueFlame monotonic). See "Ordering of a publish" above.
LL_HD inline void llIbgdaPublish(LlIbgdaQp* qp, uint64_t first, uint32_t n, uint8_t fmCeSe) {
  uint64_t deadline = 0;
  while (llLoadVolatile(&qp->readyHead) != first) {
    if (!llIbgdaKeepSpinning(qp, &deadline)) return;  // stalled: ring nothing, out of order least of all
    llPause();
  }
  llFenceAcqRel();  // earlier publishers' records before ours; our WQE before our record
  const uint64_t end = first + n;
  llStoreVolatile(&qp->sqDbrec[kLlMlx5SqDbrIndex], llMlx5SqDbrValue(static_cast<uint16_t>(end)));
  llFenceSystem();  // the record before the doorbell that makes the NIC read it
  llStoreVolatile(qp->bf, llMlx5BlueFlameValue(llIbgdaSlot(qp, first)));
  if (fmCeSe & kLlMlx5CtrlCqUpdate) llStoreVolatile(&qp->signaledHead, end);
  llFenceSystem();  // this doorbell before the next publisher's
  llStoreVolatile(&qp->readyHead, end);
}

// ---- Posts: each reserves, writes one WQE, publishes it, and returns the counter of its first WQEBB ------

// A NOP that asks for a CQE; that CQE also retires every earlier WQE (quiet's marker).
LL_HD inline uint64_t llIbgdaPostSignaledNop(LlIbgdaQp* qp) {
  const uint64_t first = llIbgdaReserve(qp, 1);
  llMlx5WriteNop(llIbgdaSlot(qp, first), static_cast<uint16_t>(first), qp->qpn, kLlMlx5CtrlCqUpdate);
  llIbgdaPublish(qp, first, 1, kLlMlx5CtrlCqUpdate);
  return first;
}

LL_HD inline uint64_t llIbgdaPostWrite(LlIbgdaQp* qp, LlMlx5Local local, uint32_t len, LlMlx5Remote remote) {
  const uint64_t first = llIbgdaReserve(qp, 1);
  const uint8_t ce = llIbgdaCompletionFlags(qp, first, 1);
  llMlx5WriteRdmaWrite(llIbgdaSlot(qp, first), static_cast<uint16_t>(first), qp->qpn, ce, local, len, remote);
  llIbgdaPublish(qp, first, 1, ce);
  return first;
}

// len <= kLlMlx5MaxInlineBytes. Beyond 28 bytes the WQE takes 2 WQEBBs; at the ring's last slot its second
// half goes to slot 0 (llIbgdaSlot wraps).
LL_HD inline uint64_t llIbgdaPostWriteInline(LlIbgdaQp* qp, const void* data, uint32_t len,
                                             LlMlx5Remote remote) {
  const uint32_t n = llMlx5InlineWriteWqeBbs(len);
  const uint64_t first = llIbgdaReserve(qp, n);
  const uint8_t ce = llIbgdaCompletionFlags(qp, first, n);
  llMlx5WriteRdmaWriteInline(llIbgdaSlot(qp, first), llIbgdaSlot(qp, first + 1), static_cast<uint16_t>(first),
                             qp->qpn, ce, data, len, remote);
  llIbgdaPublish(qp, first, n, ce);
  return first;
}

LL_HD inline uint64_t llIbgdaPostFetchAdd64(LlIbgdaQp* qp, uint64_t add, LlMlx5Local result,
                                            LlMlx5Remote remote) {
  const uint64_t first = llIbgdaReserve(qp, 1);
  const uint8_t ce = llIbgdaCompletionFlags(qp, first, 1);
  llMlx5WriteFetchAdd64(llIbgdaSlot(qp, first), static_cast<uint16_t>(first), qp->qpn, ce, add, result,
                        remote);
  llIbgdaPublish(qp, first, 1, ce);
  return first;
}

LL_HD inline uint64_t llIbgdaPostMaskedFetchAdd32(LlIbgdaQp* qp, uint32_t add, uint32_t boundary,
                                                  LlMlx5Local result, LlMlx5Remote remote) {
  const uint64_t first = llIbgdaReserve(qp, 1);
  const uint8_t ce = llIbgdaCompletionFlags(qp, first, 1);
  llMlx5WriteMaskedFetchAdd32(llIbgdaSlot(qp, first), static_cast<uint16_t>(first), qp->qpn, ce, add,
                              boundary, result, remote);
  llIbgdaPublish(qp, first, 1, ce);
  return first;
}

LL_HD inline uint64_t llIbgdaPostMaskedFetchAdd64(LlIbgdaQp* qp, uint64_t add, uint64_t boundary,
                                                  LlMlx5Local result, LlMlx5Remote remote) {
  const uint64_t first = llIbgdaReserve(qp, 1);
  const uint8_t ce = llIbgdaCompletionFlags(qp, first, 1);
  llMlx5WriteMaskedFetchAdd64(llIbgdaSlot(qp, first), static_cast<uint16_t>(first), qp->qpn, ce, add,
                              boundary, result, remote);
  llIbgdaPublish(qp, first, 1, ce);
  return first;
}

// Waits until every WQE published before the call has completed (its data is at the target, atomics'
// results are in local memory). If the last published WQE asked for no CQE, posts a signaled NOP, whose CQE
// retires it. Returns the QP's first error syndrome, 0 when none, kLlIbgdaSyndStalled for a stalled QP.
LL_HD inline uint32_t llIbgdaQuiet(LlIbgdaQp* qp) {
  uint64_t target = llLoadVolatile(&qp->readyHead);
  llFenceAcquire();  // signaledHead is stored before readyHead: see at least the matching value
  if (llLoadVolatile(&qp->signaledHead) < target) target = llIbgdaPostSignaledNop(qp) + 1;
  uint64_t deadline = 0;
  while (llLoadVolatile(&qp->consumed) < target && llIbgdaKeepSpinning(qp, &deadline)) {
    llIbgdaPollCq(qp);
    llPause();
  }
  llFenceAcquire();  // results written by the NIC before the CQE
  return llLoadVolatile(&qp->stalled) ? kLlIbgdaSyndStalled : llLoadVolatile(&qp->errSyndrome);
}
