// Decoding of send WQEs from their bytes (the PRM layouts in prm.h). Decoding only reads the WQE;
// keys, bounds and rights are checked when the WQE executes.
#pragma once

#include <cstdint>
#include <vector>

#include "transport/ibgda/model/prm.h"
#include "transport/ibgda/model/wire.h"

namespace llnic {

struct CtrlSeg {
  uint8_t opcode = 0;
  uint8_t opmod = 0;
  uint16_t wqeIndex = 0;
  uint32_t qpn = 0;
  uint8_t ds = 0;  // the whole byte: values above prm::kMaxDs mean a malformed WQE
  uint8_t fmCeSe = 0;

  bool cqUpdate() const { return fmCeSe & prm::kCtrlCqUpdate; }
  uint8_t fenceMode() const { return fmCeSe >> prm::kCtrlFenceShift; }
  bool dsValid() const { return ds >= 1 && ds <= prm::kMaxDs; }
  // WQEBBs the WQE occupies in the ring; a malformed DS still consumes one.
  uint32_t wqeBbs() const {
    return dsValid() ? (ds * prm::kDsBytes + prm::kWqeBbBytes - 1) / prm::kWqeBbBytes : 1;
  }
};

// Reads the 16-byte ctrl segment at the start of a WQE.
CtrlSeg decodeCtrl(const uint8_t* wqe);

struct DataSeg {
  uint32_t byteCount = 0;
  uint32_t lkey = 0;
  uint64_t addr = 0;
};

// One piece of an RDMA write's payload, in order: a pointer (data segment) or bytes carried inline,
// which lie in the WQE at inlineOffset.
struct GatherPiece {
  bool isInline = false;
  DataSeg seg;  // for inline pieces only byteCount is set
  uint32_t inlineOffset = 0;
};

enum class WqeKind { kNop, kRdmaWrite, kAtomic };

struct Wqe {
  CtrlSeg ctrl;
  WqeKind kind = WqeKind::kNop;
  uint64_t raddr = 0;  // RDMA write and atomics: the raddr segment
  uint32_t rkey = 0;
  std::vector<GatherPiece> gather;  // RDMA write
  AtomicKind atomicKind = AtomicKind::kFetchAdd64;
  uint64_t add = 0;
  uint64_t boundary = 0;
  DataSeg result;  // atomics: where the old value goes
};

// Decodes a whole WQE (ctrl.ds * 16 contiguous bytes; ctrl.dsValid() must hold). Returns
// Syndrome::kNone for a WQE the model executes, else the syndrome its completion reports:
// kLocalQpOpErr for an opcode or operand size the model does not implement, or segments that do not
// fit the DS count.
prm::Syndrome decodeWqe(const uint8_t* wqe, Wqe* out);

}  // namespace llnic
