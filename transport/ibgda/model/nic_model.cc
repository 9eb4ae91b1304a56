#include "transport/ibgda/model/nic_model.h"

#include "transport/ibgda/model/responder.h"

namespace llnic {

namespace {
// Largest rings the model accepts, those ConnectX devices report (max_cqe 2^22 - 1, max_qp_wr 2^15).
// A send queue of at most 2^15 WQEBBs also lets the 16-bit WQEBB counter tell full from empty.
constexpr uint32_t kMaxLogCqSize = 22;
constexpr uint32_t kMaxLogSqBbs = 15;

// A ring must be aligned to its entry size, a doorbell record to its be32 words.
bool placed(uint64_t ring, uint64_t entryBytes, uint64_t dbrec) {
  return ring && ring % entryBytes == 0 && dbrec && dbrec % 4 == 0;
}
}  // namespace

Status NicModel::createCq(const CqConfig& config, uint32_t* cqn) {
  if (!cqn || config.logSize > kMaxLogCqSize || !placed(config.ringAddr, prm::kCqeBytes, config.dbrecAddr))
    return Status::kInvalidArgument;
  std::lock_guard<std::mutex> lock(mutex_);
  *cqn = nextCqn_++;
  cqs_[*cqn] = std::make_unique<Cq>(memory_, config);
  return Status::kOk;
}

Status NicModel::createQp(const QpConfig& config, uint32_t* qpn) {
  if (!qpn || config.logSqBbs > kMaxLogSqBbs || !placed(config.sqAddr, prm::kWqeBbBytes, config.dbrecAddr))
    return Status::kInvalidArgument;
  std::lock_guard<std::mutex> lock(mutex_);
  auto cq = cqs_.find(config.cqn);
  if (cq == cqs_.end()) return Status::kNotFound;
  *qpn = nextQpn_++;
  qps_[*qpn] = std::make_unique<Qp>(*qpn, config, *cq->second, memory_, executor_);
  return Status::kOk;
}

Qp* NicModel::qp(uint32_t qpn) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = qps_.find(qpn);
  return it == qps_.end() ? nullptr : it->second.get();
}

Cq* NicModel::cq(uint32_t cqn) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = cqs_.find(cqn);
  return it == cqs_.end() ? nullptr : it->second.get();
}

Status NicModel::modifyQp(uint32_t qpn, QpState to, const RemoteQp* remote) {
  Qp* q = qp(qpn);
  return q ? q->modify(to, remote) : Status::kNotFound;
}

Status NicModel::ringSq(uint32_t qpn, uint16_t producer) {
  Qp* q = qp(qpn);
  return q ? q->ring(producer) : Status::kNotFound;
}

Status NicModel::pollSqDoorbell(uint32_t qpn) {
  Qp* q = qp(qpn);
  return q ? q->pollDoorbellRecord() : Status::kNotFound;
}

// Packets for a QP that does not exist or is not ready for them are dropped without an answer.
bool NicModel::accepts(uint32_t qpn) {
  Qp* q = qp(qpn);
  return q && q->acceptsIncoming();
}

WireStatus NicModel::onWrite(const WriteMsg& msg) {
  return accepts(msg.dstQpn) ? respondWrite(pd_, memory_, msg) : WireStatus::kNoResponder;
}

AtomicReply NicModel::onAtomic(const AtomicMsg& msg) {
  return accepts(msg.dstQpn) ? respondAtomic(pd_, memory_, msg) : AtomicReply{WireStatus::kNoResponder, 0};
}

}  // namespace llnic
