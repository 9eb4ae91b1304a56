// A completion queue: a caller-provided ring of 2^n 64-byte CQEs that software polls, and its
// doorbell record, where software publishes its consumer index.
#pragma once

#include <cstdint>
#include <mutex>

#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/prm.h"

namespace llnic {

struct CqConfig {
  uint64_t ringAddr = 0;  // 2^logSize CQEs of 64 bytes
  uint32_t logSize = 0;
  uint64_t dbrecAddr = 0;  // be32 consumer index at dbrec[MLX5_CQ_SET_CI = 0]
  // Like the CQ context's overrun-ignore flag: never read the consumer index, never report overrun.
  bool ignoreOverrun = false;
};

// What one CQE reports about one WQE.
struct CqeInfo {
  uint8_t wqeOpcode = 0;
  uint32_t qpn = 0;
  uint16_t wqeCounter = 0;  // the WQE's wqe_index
  prm::Syndrome syndrome = prm::Syndrome::kNone;
  uint32_t byteCount = 0;  // successes only
};

class Cq {
 public:
  Cq(Memory& memory, const CqConfig& config) : memory_(memory), config_(config) {}
  // Writes the next CQE: REQ with the byte count for a success, REQ_ERR with the syndrome and vendor
  // syndrome for an error. A full CQ (unless overrun is ignored) is an overrun: the CQE is dropped and
  // the CQ writes nothing more, as a device's CQ in error does.
  void post(const CqeInfo& info);
  bool overrun() const;

 private:
  bool full();
  void fill(const CqeInfo& info, uint8_t* cqe) const;

  Memory& memory_;
  const CqConfig config_;
  mutable std::mutex mutex_;  // QPs on different threads may share a CQ
  uint32_t producer_ = 0;     // CQEs written so far
  bool overrun_ = false;
};

}  // namespace llnic
