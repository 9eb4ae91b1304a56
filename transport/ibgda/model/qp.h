// An RC QP's send side: its state, its send queue (a caller-provided ring of 2^n WQEBBs and a doorbell
// record) and the walk that executes every WQE between the consumer and producer counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "transport/ibgda/model/cq.h"
#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/status.h"
#include "transport/ibgda/model/wqe_exec.h"

namespace llnic {

enum class QpState { kReset, kInit, kRtr, kRts, kError };

struct QpConfig {
  uint64_t sqAddr = 0;  // 2^logSqBbs WQEBBs of 64 bytes
  uint32_t logSqBbs = 0;
  uint64_t dbrecAddr = 0;  // be32 producer counter at dbrec[MLX5_SND_DBR = 1]
  uint32_t cqn = 0;        // the send CQ
};

struct QpStats {
  uint64_t executed = 0;  // WQEs that completed successfully
  uint64_t failed = 0;    // WQEs that completed in error (flushes included)
  uint64_t fenced = 0;    // WQEs with a fence mode; execution is in order, so every fence holds
};

class Qp {
 public:
  Qp(uint32_t qpn, const QpConfig& config, Cq& cq, Memory& memory, WqeExecutor& executor)
      : qpn_(qpn), config_(config), cq_(cq), memory_(memory), executor_(executor) {}

  // RST->INIT->RTR (needs `remote`)->RTS; any state -> ERR; any state -> RST, which also clears the
  // send queue counters (software starts posting again at 0).
  Status modify(QpState to, const RemoteQp* remote);
  QpState state() const { return state_.load(); }
  // A responder accepts packets for a QP in RTR or RTS.
  bool acceptsIncoming() const;

  // Executes the WQEs in [consumer, producer) in order (counters in WQEBBs, modulo 2^16). A producer
  // more than the ring size ahead of the consumer is refused.
  Status ring(uint16_t producer);
  // Reads the producer counter from the doorbell record and rings with it.
  Status pollDoorbellRecord();
  uint16_t consumerIndex() const;
  QpStats stats() const;

 private:
  uint16_t executeOne(uint16_t available);
  prm::Syndrome run(const CtrlSeg& ctrl, const uint8_t* wqe, uint32_t* byteCount);
  void readRing(uint16_t firstBb, uint32_t bbs, uint8_t* dst);
  void complete(const CtrlSeg& ctrl, prm::Syndrome syndrome, uint32_t byteCount);

  const uint32_t qpn_;
  const QpConfig config_;
  Cq& cq_;
  Memory& memory_;
  WqeExecutor& executor_;
  mutable std::mutex mutex_;  // one walk at a time, and state changes between WQEs only
  std::atomic<QpState> state_{QpState::kReset};
  RemoteQp remote_;
  uint16_t consumer_ = 0;
  QpStats stats_;
};

}  // namespace llnic
