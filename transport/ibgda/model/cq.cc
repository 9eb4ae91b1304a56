#include "transport/ibgda/model/cq.h"

#include <cstring>

#include "transport/ibgda/model/be.h"

namespace llnic {

bool Cq::overrun() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return overrun_;
}

// The ring holds 2^logSize CQEs; it is full when the producer is that far ahead of the consumer
// index software last published (24 bits wide, so the difference is taken modulo 2^24).
bool Cq::full() {
  if (config_.ignoreOverrun) return false;
  uint32_t raw = memory_.loadAcquire32(config_.dbrecAddr + prm::kCqDbrecConsumerOffset);
  uint32_t consumer = loadBe32(reinterpret_cast<const uint8_t*>(&raw)) & prm::kCqConsumerMask;
  return ((producer_ - consumer) & prm::kCqConsumerMask) >= (1u << config_.logSize);
}

// Owner bit: the device writes (index >> logSize) & 1, so it flips on every pass over the ring and a
// poller that expects (its consumer index >> logSize) & 1 never mistakes a stale CQE for a new one
// (rdma-core get_sw_cqe).
void Cq::fill(const CqeInfo& info, uint8_t* cqe) const {
  std::memset(cqe, 0, prm::kCqeBytes);
  uint8_t opcode = prm::kCqeReq;
  if (info.syndrome == prm::Syndrome::kNone) {
    storeBe32(cqe + prm::kCqeByteCnt, info.byteCount);
  } else {
    opcode = prm::kCqeReqErr;
    cqe[prm::kCqeSyndrome] = (uint8_t)info.syndrome;
    cqe[prm::kCqeVendorSyndrome] = prm::vendorSyndrome(info.syndrome);
  }
  storeBe32(cqe + prm::kCqeOpcodeQpn, ((uint32_t)info.wqeOpcode << 24) | (info.qpn & 0xffffff));
  storeBe16(cqe + prm::kCqeWqeCounter, info.wqeCounter);
  uint8_t owner = (producer_ >> config_.logSize) & 1;
  cqe[prm::kCqeOpOwn] = (uint8_t)((opcode << prm::kCqeOpcodeShift) | owner);
}

// The last 4 bytes (wqe_counter, signature, op_own) go last with a release store, so the owner bit
// publishes a complete CQE.
void Cq::post(const CqeInfo& info) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (overrun_ || full()) {
    overrun_ = true;
    return;
  }
  uint8_t cqe[prm::kCqeBytes];
  fill(info, cqe);
  const uint32_t index = producer_ & ((1u << config_.logSize) - 1);
  const uint64_t slot = config_.ringAddr + (uint64_t)index * prm::kCqeBytes;
  constexpr uint32_t kTail = prm::kCqeBytes - 4;
  memory_.write(slot, cqe, kTail);
  uint32_t tail;
  std::memcpy(&tail, cqe + kTail, sizeof(tail));
  memory_.storeRelease32(slot + kTail, tail);
  producer_++;
}

}  // namespace llnic
