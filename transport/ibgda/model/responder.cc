#include "transport/ibgda/model/responder.h"

namespace llnic {

namespace {

uint64_t lowBits(unsigned n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

// The mask of field bits [lo, hi].
uint64_t fieldMask(unsigned lo, unsigned hi) { return lowBits(hi + 1) & ~lowBits(lo); }

uint64_t readWord(Memory& memory, uint64_t addr, unsigned bits) {
  if (bits == 64) {
    uint64_t v = 0;
    memory.read(addr, &v, sizeof(v));
    return v;
  }
  uint32_t v = 0;
  memory.read(addr, &v, sizeof(v));
  return v;
}

// Retries the compare-and-swap until no other agent changed the word in between, as the device's
// read-modify-write is atomic with respect to every other access.
uint64_t maskedFetchAdd(Memory& memory, const AtomicMsg& msg, unsigned bits) {
  uint64_t old = readWord(memory, msg.raddr, bits);
  for (;;) {
    uint64_t next = maskedAdd(old, msg.add, msg.boundary, bits);
    uint64_t seen = bits == 32 ? memory.compareSwap32(msg.raddr, (uint32_t)old, (uint32_t)next)
                               : memory.compareSwap64(msg.raddr, old, next);
    if (seen == old) return old;
    old = seen;
  }
}

}  // namespace

uint64_t maskedAdd(uint64_t old, uint64_t add, uint64_t boundary, unsigned bits) {
  uint64_t result = 0;
  unsigned lo = 0;
  for (unsigned bit = 0; bit < bits; ++bit) {
    if (!((boundary >> bit) & 1) && bit != bits - 1) continue;
    uint64_t mask = fieldMask(lo, bit);
    result |= ((old & mask) + (add & mask)) & mask;  // the carry out of the field falls outside mask
    lo = bit + 1;
  }
  return result;
}

// IB: a zero-length RDMA write validates neither R_Key nor address, so it always succeeds.
WireStatus respondWrite(const ProtectionDomain& pd, Memory& memory, const WriteMsg& msg) {
  if (msg.len == 0) return WireStatus::kOk;
  if (pd.check(msg.rkey, msg.raddr, msg.len, kAccessRemoteWrite) != KeyCheck::kOk)
    return WireStatus::kRemoteAccess;
  memory.write(msg.raddr, msg.data, msg.len);
  return WireStatus::kOk;
}

// IB atomics need REMOTE_ATOMIC on the region and a naturally aligned address; a misaligned one is
// answered with NAK invalid request.
AtomicReply respondAtomic(const ProtectionDomain& pd, Memory& memory, const AtomicMsg& msg) {
  const uint32_t bytes = atomicBytes(msg.kind);
  if (pd.check(msg.rkey, msg.raddr, bytes, kAccessRemoteAtomic) != KeyCheck::kOk)
    return AtomicReply{WireStatus::kRemoteAccess, 0};
  if (msg.raddr % bytes) return AtomicReply{WireStatus::kInvalidRequest, 0};
  switch (msg.kind) {
    case AtomicKind::kFetchAdd64: return AtomicReply{WireStatus::kOk, memory.fetchAdd64(msg.raddr, msg.add)};
    case AtomicKind::kMaskedFetchAdd32: return AtomicReply{WireStatus::kOk, maskedFetchAdd(memory, msg, 32)};
    case AtomicKind::kMaskedFetchAdd64: return AtomicReply{WireStatus::kOk, maskedFetchAdd(memory, msg, 64)};
  }
  return AtomicReply{WireStatus::kInvalidRequest, 0};
}

}  // namespace llnic
