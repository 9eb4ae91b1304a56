#include "transport/ibgda/model/wqe_decode.h"

#include "transport/ibgda/model/be.h"

namespace llnic {

namespace {

using prm::Syndrome;

// Offsets of the segments that follow the ctrl segment, each 16 bytes (DS units).
constexpr uint32_t kRaddrSegOffset = 16;
constexpr uint32_t kAfterRaddr = 32;
constexpr uint32_t kAtomicDs = 4;  // ctrl + raddr + atomic operands + data segment
constexpr uint32_t kAtomicResultOffset = 48;

uint64_t alignDs(uint64_t bytes) { return (bytes + prm::kDsBytes - 1) / prm::kDsBytes * prm::kDsBytes; }

DataSeg decodeDataSeg(const uint8_t* p) {
  DataSeg d;
  d.byteCount = loadBe32(p + prm::kDataByteCount);
  d.lkey = loadBe32(p + prm::kDataLkey);
  d.addr = loadBe64(p + prm::kDataAddr);
  return d;
}

void decodeRaddr(const uint8_t* wqe, Wqe* out) {
  out->raddr = loadBe64(wqe + kRaddrSegOffset + prm::kRaddrAddr);
  out->rkey = loadBe32(wqe + kRaddrSegOffset + prm::kRaddrRkey);
}

// RDMA write: ctrl, raddr, then data and inline segments until DS runs out. An inline segment is
// told apart by MLX5_INLINE_SEG in its first word and takes 4 + byte_count bytes rounded up to 16.
Syndrome decodeWrite(const uint8_t* wqe, Wqe* out) {
  const uint32_t end = out->ctrl.ds * prm::kDsBytes;
  if (end < kAfterRaddr) return Syndrome::kLocalQpOpErr;
  decodeRaddr(wqe, out);
  for (uint32_t off = kAfterRaddr; off < end;) {
    GatherPiece piece;
    uint32_t word = loadBe32(wqe + off);
    if (word & prm::kInlineSeg) {
      piece.isInline = true;
      piece.seg.byteCount = word & ~prm::kInlineSeg;
      piece.inlineOffset = off + prm::kInlineHeaderBytes;
      uint64_t segBytes = alignDs((uint64_t)prm::kInlineHeaderBytes + piece.seg.byteCount);
      if (off + segBytes > end) return Syndrome::kLocalQpOpErr;
      off += (uint32_t)segBytes;
    } else {
      piece.seg = decodeDataSeg(wqe + off);
      off += prm::kDsBytes;
    }
    out->gather.push_back(piece);
  }
  out->kind = WqeKind::kRdmaWrite;
  return Syndrome::kNone;
}

// Atomics: ctrl, raddr, a 16-byte operand segment, and the data segment that receives the old value.
Syndrome decodeAtomic(const uint8_t* wqe, AtomicKind kind, Wqe* out) {
  if (out->ctrl.ds != kAtomicDs) return Syndrome::kLocalQpOpErr;
  decodeRaddr(wqe, out);
  const uint8_t* ops = wqe + kAfterRaddr;
  switch (kind) {
    case AtomicKind::kFetchAdd64:
      out->add = loadBe64(ops + prm::kAtomicSwapAdd);
      break;
    case AtomicKind::kMaskedFetchAdd32:
      out->add = loadBe32(ops + prm::kMaskedFa4Add);
      out->boundary = loadBe32(ops + prm::kMaskedFa4Boundary);
      break;
    case AtomicKind::kMaskedFetchAdd64:
      out->add = loadBe64(ops + prm::kMaskedFa8Add);
      out->boundary = loadBe64(ops + prm::kMaskedFa8Boundary);
      break;
  }
  out->kind = WqeKind::kAtomic;
  out->atomicKind = kind;
  out->result = decodeDataSeg(wqe + kAtomicResultOffset);
  return Syndrome::kNone;
}

// Masked atomics carry their operand size in opmod (0x08 | (log2(bytes) - 2)); the model implements
// the 4- and 8-byte forms.
Syndrome decodeMaskedFetchAdd(const uint8_t* wqe, Wqe* out) {
  switch (out->ctrl.opmod) {
    case prm::kOpmodExtAtomic4: return decodeAtomic(wqe, AtomicKind::kMaskedFetchAdd32, out);
    case prm::kOpmodExtAtomic8: return decodeAtomic(wqe, AtomicKind::kMaskedFetchAdd64, out);
    default: return Syndrome::kLocalQpOpErr;
  }
}

}  // namespace

CtrlSeg decodeCtrl(const uint8_t* wqe) {
  CtrlSeg c;
  uint32_t opmodIdxOpcode = loadBe32(wqe + prm::kCtrlOpmodIdxOpcode);
  uint32_t qpnDs = loadBe32(wqe + prm::kCtrlQpnDs);
  c.opmod = (uint8_t)(opmodIdxOpcode >> 24);
  c.wqeIndex = (uint16_t)(opmodIdxOpcode >> 8);
  c.opcode = (uint8_t)opmodIdxOpcode;
  c.qpn = qpnDs >> 8;
  c.ds = (uint8_t)qpnDs;
  c.fmCeSe = wqe[prm::kCtrlFmCeSe];
  return c;
}

prm::Syndrome decodeWqe(const uint8_t* wqe, Wqe* out) {
  out->ctrl = decodeCtrl(wqe);
  switch (out->ctrl.opcode) {
    case prm::kOpNop: out->kind = WqeKind::kNop; return Syndrome::kNone;
    case prm::kOpRdmaWrite: return decodeWrite(wqe, out);
    case prm::kOpAtomicFetchAdd: return decodeAtomic(wqe, AtomicKind::kFetchAdd64, out);
    case prm::kOpAtomicMaskedFetchAdd: return decodeMaskedFetchAdd(wqe, out);
    default: return Syndrome::kLocalQpOpErr;
  }
}

}  // namespace llnic
