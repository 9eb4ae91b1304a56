// The link between two model devices ("ranks"). A requester's QP sends each operation as one message
// that carries everything the responder needs (destination QP, key, address, data or operands) and
// waits for its answer, so one QP's operations reach the responder in posting order (RC order) and
// the same messages can later travel over a socket between processes.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace llnic {

using PeerId = int;

enum class AtomicKind {
  kFetchAdd64,        // MLX5_OPCODE_ATOMIC_FA: 8-byte fetch-add
  kMaskedFetchAdd32,  // MLX5_OPCODE_ATOMIC_MASKED_FA, 4-byte operands
  kMaskedFetchAdd64,  // MLX5_OPCODE_ATOMIC_MASKED_FA, 8-byte operands
};

inline uint32_t atomicBytes(AtomicKind k) { return k == AtomicKind::kMaskedFetchAdd32 ? 4 : 8; }

// A responder's answer. The requester turns anything but kOk into the syndrome of its error CQE.
enum class WireStatus {
  kOk,
  kRemoteAccess,    // NAK remote access error: bad rkey, out of the region, or a missing right
  kInvalidRequest,  // NAK invalid request: e.g. an atomic on an address its size does not divide
  kNoResponder,     // no answer at all (no such QP, or not ready): the requester's retries run out
};

struct WriteMsg {
  uint32_t dstQpn = 0;
  uint32_t rkey = 0;
  uint64_t raddr = 0;
  const uint8_t* data = nullptr;
  uint32_t len = 0;
};

struct AtomicMsg {
  uint32_t dstQpn = 0;
  AtomicKind kind = AtomicKind::kFetchAdd64;
  uint32_t rkey = 0;
  uint64_t raddr = 0;
  uint64_t add = 0;
  uint64_t boundary = 0;  // masked fetch-add: a set bit ends a field (its carry out is dropped)
};

struct AtomicReply {
  WireStatus status = WireStatus::kOk;
  uint64_t old = 0;  // the target's value before the operation (low 4 bytes for 32-bit operands)
};

// The receiving side of a device: executes what arrives for one of its QPs.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual WireStatus onWrite(const WriteMsg& msg) = 0;
  virtual AtomicReply onAtomic(const AtomicMsg& msg) = 0;
};

// The sending side: delivers a message to a peer's responder and returns its answer.
class Wire {
 public:
  virtual ~Wire() = default;
  virtual WireStatus write(PeerId peer, const WriteMsg& msg) = 0;
  virtual AtomicReply atomic(PeerId peer, const AtomicMsg& msg) = 0;
};

// Devices of one process: a message is a direct call into the peer's responder.
class LoopbackWire final : public Wire {
 public:
  void attach(PeerId peer, Responder* responder);
  WireStatus write(PeerId peer, const WriteMsg& msg) override;
  AtomicReply atomic(PeerId peer, const AtomicMsg& msg) override;

 private:
  Responder* find(PeerId peer);
  std::mutex mutex_;
  std::unordered_map<PeerId, Responder*> peers_;
};

}  // namespace llnic
