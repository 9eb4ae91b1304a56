// A software model of the subset of an mlx5 device that llep drives: one protection domain, CQs and RC
// QPs whose rings live in caller memory, and WQE execution over a Wire to other model devices. Work
// errors come back as CQEs, exactly where a GPU polling a real CQ would find them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "transport/ibgda/model/cq.h"
#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/qp.h"
#include "transport/ibgda/model/status.h"
#include "transport/ibgda/model/wire.h"
#include "transport/ibgda/model/wqe_exec.h"

namespace llnic {

class NicModel final : public Responder {
 public:
  // `memory` holds everything the device touches (rings, doorbell records, registered regions);
  // `wire` carries this device's operations to its peers.
  NicModel(Memory& memory, Wire& wire) : memory_(memory), executor_(pd_, memory, wire) {}

  ProtectionDomain& pd() { return pd_; }

  // Rings must hold a power of two entries (at least one CQE, at least one WQEBB) and be 64-byte
  // aligned, doorbell records 4-byte aligned; a QP's CQ must exist.
  Status createCq(const CqConfig& config, uint32_t* cqn);
  Status createQp(const QpConfig& config, uint32_t* qpn);
  Status modifyQp(uint32_t qpn, QpState to, const RemoteQp* remote = nullptr);
  Status ringSq(uint32_t qpn, uint16_t producer);
  Status pollSqDoorbell(uint32_t qpn);
  // nullptr when no such object exists; objects live as long as the model.
  Qp* qp(uint32_t qpn);
  Cq* cq(uint32_t cqn);

  // Responder: operations that arrive from peers for this device's QPs.
  WireStatus onWrite(const WriteMsg& msg) override;
  AtomicReply onAtomic(const AtomicMsg& msg) override;

 private:
  bool accepts(uint32_t qpn);

  Memory& memory_;
  ProtectionDomain pd_;
  WqeExecutor executor_;
  std::mutex mutex_;  // guards the object tables; objects have their own locks
  std::map<uint32_t, std::unique_ptr<Cq>> cqs_;
  std::map<uint32_t, std::unique_ptr<Qp>> qps_;
  // Object numbers are 24-bit, like mlx5 QPNs and CQNs; these bases make them easy to tell apart.
  uint32_t nextCqn_ = 0x80;
  uint32_t nextQpn_ = 0x100;
};

}  // namespace llnic
