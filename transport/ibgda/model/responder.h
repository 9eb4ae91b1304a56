// What a device does with an operation that arrives for one of its QPs: remote key, bounds and rights
// checks against its protection domain, then the memory access itself.
#pragma once

#include <cstdint>

#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/wire.h"

namespace llnic {

WireStatus respondWrite(const ProtectionDomain& pd, Memory& memory, const WriteMsg& msg);
AtomicReply respondAtomic(const ProtectionDomain& pd, Memory& memory, const AtomicMsg& msg);

// Masked fetch-add arithmetic on the low `bits` bits: `old` and `add` are split into fields, each
// ending at a bit set in `boundary` (and at the top bit); each field adds on its own and the carry
// out of its top bit is dropped. boundary 0 is a plain add.
uint64_t maskedAdd(uint64_t old, uint64_t add, uint64_t boundary, unsigned bits);

}  // namespace llnic
