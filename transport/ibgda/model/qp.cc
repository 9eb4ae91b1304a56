#include "transport/ibgda/model/qp.h"

#include <algorithm>
#include <vector>

#include "transport/ibgda/model/be.h"

namespace llnic {

using prm::Syndrome;

Status Qp::modify(QpState to, const RemoteQp* remote) {
  std::lock_guard<std::mutex> lock(mutex_);
  const QpState from = state_.load();
  bool allowed = to == QpState::kReset || to == QpState::kError ||
                 (from == QpState::kReset && to == QpState::kInit) ||
                 (from == QpState::kInit && to == QpState::kRtr) ||
                 (from == QpState::kRtr && to == QpState::kRts);
  if (!allowed) return Status::kInvalidState;
  if (to == QpState::kRtr) {
    if (!remote) return Status::kInvalidArgument;
    remote_ = *remote;
  }
  if (to == QpState::kReset) consumer_ = 0;
  state_.store(to);
  return Status::kOk;
}

bool Qp::acceptsIncoming() const {
  QpState s = state_.load();
  return s == QpState::kRtr || s == QpState::kRts;
}

uint16_t Qp::consumerIndex() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return consumer_;
}

QpStats Qp::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

Status Qp::ring(uint16_t producer) {
  std::lock_guard<std::mutex> lock(mutex_);
  if ((uint16_t)(producer - consumer_) > (1u << config_.logSqBbs)) return Status::kInvalidArgument;
  while (consumer_ != producer) consumer_ += executeOne((uint16_t)(producer - consumer_));
  return Status::kOk;
}

Status Qp::pollDoorbellRecord() {
  uint32_t raw = memory_.loadAcquire32(config_.dbrecAddr + prm::kSqDbrecOffset);
  return ring((uint16_t)loadBe32(reinterpret_cast<const uint8_t*>(&raw)));
}

// WQEBB i of the send queue lives in ring slot i mod 2^logSqBbs, so a WQE that starts near the end of
// the ring continues at its start.
void Qp::readRing(uint16_t firstBb, uint32_t bbs, uint8_t* dst) {
  const uint32_t mask = (1u << config_.logSqBbs) - 1;
  for (uint32_t i = 0; i < bbs; ++i) {
    uint64_t slot = (uint64_t)((firstBb + i) & mask) * prm::kWqeBbBytes;
    memory_.read(config_.sqAddr + slot, dst + (size_t)i * prm::kWqeBbBytes, prm::kWqeBbBytes);
  }
}

// Executes the WQE at the consumer counter; returns the WQEBBs it occupied. A WQE whose DS says it
// extends past the producer counter is malformed and consumes only what was posted.
uint16_t Qp::executeOne(uint16_t available) {
  std::vector<uint8_t> wqe(prm::kWqeBbBytes);
  readRing(consumer_, 1, wqe.data());
  const CtrlSeg ctrl = decodeCtrl(wqe.data());
  const uint32_t bbs = std::min<uint32_t>(ctrl.wqeBbs(), available);
  wqe.resize((size_t)bbs * prm::kWqeBbBytes);
  readRing((uint16_t)(consumer_ + 1), bbs - 1, wqe.data() + prm::kWqeBbBytes);
  uint32_t byteCount = 0;
  Syndrome syndrome = Syndrome::kWrFlushErr;
  if (state_.load() != QpState::kError)
    syndrome = bbs < ctrl.wqeBbs() ? Syndrome::kLocalQpOpErr : run(ctrl, wqe.data(), &byteCount);
  complete(ctrl, syndrome, byteCount);
  return (uint16_t)bbs;
}

// The checks a WQE passes before it runs:
// - the QP must be in RTS. IB processes sends only there, and refuses a post in RST, INIT or RTR
//   with an immediate error, which a doorbell written by a GPU cannot receive; so the model
//   completes the WQE with LOCAL_QP_OP_ERR and moves the QP to ERR.
// - its ctrl segment must carry a valid DS, this QP's number and the WQEBB counter it sits at. The
//   device takes these from the ctrl segment; the model insists they agree so that an encoder bug
//   shows up as LOCAL_QP_OP_ERR rather than as a quietly misplaced completion.
Syndrome Qp::run(const CtrlSeg& ctrl, const uint8_t* wqe, uint32_t* byteCount) {
  if (state_.load() != QpState::kRts) return Syndrome::kLocalQpOpErr;
  if (!ctrl.dsValid() || ctrl.qpn != qpn_ || ctrl.wqeIndex != consumer_) return Syndrome::kLocalQpOpErr;
  Wqe decoded;
  Syndrome s = decodeWqe(wqe, &decoded);
  if (s != Syndrome::kNone) return s;
  if (ctrl.fenceMode()) stats_.fenced++;
  Completion c = executor_.execute(decoded, wqe, remote_);
  *byteCount = c.byteCount;
  return c.syndrome;
}

// A success writes a CQE only when the WQE asked for one (CQ_UPDATE); an error always does (the
// completion mode's "CQE on error"), moves the QP to ERR, and from then on every WQE is flushed.
void Qp::complete(const CtrlSeg& ctrl, Syndrome syndrome, uint32_t byteCount) {
  const bool ok = syndrome == Syndrome::kNone;
  if (ok) stats_.executed++;
  else stats_.failed++;
  if (!ok) state_.store(QpState::kError);
  if (!ok || ctrl.cqUpdate()) {
    CqeInfo info;
    info.wqeOpcode = ctrl.opcode;
    info.qpn = qpn_;
    info.wqeCounter = consumer_;  // equals ctrl.wqeIndex for every WQE that ran
    info.syndrome = syndrome;
    info.byteCount = byteCount;
    cq_.post(info);
  }
}

}  // namespace llnic
