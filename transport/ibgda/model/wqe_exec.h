// Execution of decoded WQEs on the requester: local keys are checked against this device's protection
// domain, payloads are gathered from memory or from the WQE's inline bytes, and the operation travels
// over the wire to the QP's remote.
#pragma once

#include <cstdint>

#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/prm.h"
#include "transport/ibgda/model/wire.h"
#include "transport/ibgda/model/wqe_decode.h"

namespace llnic {

// Where a connected RC QP sends (set when the QP moves to RTR).
struct RemoteQp {
  PeerId peer = 0;
  uint32_t qpn = 0;
};

struct Completion {
  prm::Syndrome syndrome = prm::Syndrome::kNone;
  uint32_t byteCount = 0;  // bytes written, or the atomic's operand size
};

class WqeExecutor {
 public:
  WqeExecutor(ProtectionDomain& pd, Memory& memory, Wire& wire) : pd_(pd), memory_(memory), wire_(wire) {}
  // `wqeBytes` are the bytes the WQE was decoded from (inline payloads live there).
  Completion execute(const Wqe& wqe, const uint8_t* wqeBytes, const RemoteQp& remote);

 private:
  Completion rdmaWrite(const Wqe& wqe, const uint8_t* wqeBytes, const RemoteQp& remote);
  Completion atomic(const Wqe& wqe, const RemoteQp& remote);

  ProtectionDomain& pd_;
  Memory& memory_;
  Wire& wire_;
};

}  // namespace llnic
