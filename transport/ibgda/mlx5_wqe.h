// Encoders of the mlx5 send-queue work-queue entries (WQEs) that the GPU-initiated RDMA path posts, callable
// from CUDA kernels and from host code (CPU tests, the software NIC model). Layouts are the PRM's "Send WQE
// Format" (Control, Remote Address, Data, Inline Data and Atomic segments); test/cpu/test_mlx5_wqe.cc checks
// them against <infiniband/mlx5dv.h>, which this header must not include (device code cannot use it).
//
// A send queue is a ring of 64-byte WQE basic blocks (WQEBBs). A WQE is a sequence of 16-byte units ("DS")
// starting at a WQEBB; it may continue into the next WQEBB, which at the end of the ring is the first one.
// Every multi-byte field is big-endian. Each encoder writes whole 16-byte units (one vector store each on the
// GPU) and nothing past the WQE's last unit; it publishes nothing (fences and doorbells are the caller's).
//
// Byte map, offsets within a segment ("be" = big-endian; fields not listed are written as zero):
//   Control (16 B, every WQE; struct mlx5_wqe_ctrl_seg)
//     0       opmod       0, or an extended-atomic operand size (see masked fetch-add below)
//     1..2    wqe_index   be16: the producer counter of the WQE's first WQEBB; wraps at 0xffff whatever the
//                         ring size (mlx5dv.h, mlx5dv_set_ctrl_seg "pi")
//     3       opcode      kLlMlx5Op*
//     4..6    qpn         be24: the send queue's QP number
//     7       ds          bits [5:0]: the WQE's size in 16-byte units, this segment included
//     8       signature   0 (WQE signatures are not enabled)
//     9..10   dci stream  0 (RC QPs)
//     11      fm_ce_se    fence mode [7:5], completion mode [3:2], solicited event [1] (kLlMlx5Ctrl*)
//     12..15  imm         0
//   Remote address (16 B; mlx5_wqe_raddr_seg): 0..7 be64 remote address, 8..11 be32 rkey.
//   Data pointer (16 B; mlx5_wqe_data_seg): 0..3 be32 byte count, 4..7 be32 lkey, 8..15 be64 local address.
//   Inline data (mlx5_wqe_inl_data_seg): 0..3 be32 (byte count | kLlMlx5InlineSeg), then the payload bytes as
//     they are in memory, zero-padded to a multiple of 16 bytes counted from the segment's start.
//   Atomic (16 B; mlx5_wqe_atomic_seg): 0..7 be64 swap_add (the addend), 8..15 be64 compare (0 for add).
//   Masked fetch-add, 4-byte operand (16 B): 0..3 be32 add, 4..7 be32 field boundary, 8..15 zero.
//   Masked fetch-add, 8-byte operand (16 B): 0..7 be64 add, 8..15 be64 field boundary.
//
// The WQEs, with their segments at offsets from the WQE's start:
//   WQE                 opcode opmod ds                    WQEBBs  segments
//   NOP                 0x00   0     1                     1       ctrl 0
//   RDMA write          0x08   0     3 (2 if len == 0)     1       ctrl 0, raddr 16, data 32
//   RDMA write, inline  0x08   0     2 + ceil((4+len)/16)  1..2    ctrl 0, raddr 16, inline 32..
//   fetch-add, 64-bit   0x12   0     4                     1       ctrl 0, raddr 16, atomic 32, data 48 (8 B)
//   masked FA, 32-bit   0x15   0x08  4                     1       ctrl 0, raddr 16, masked 32, data 48 (4 B)
//   masked FA, 64-bit   0x15   0x09  4                     1       ctrl 0, raddr 16, masked 32, data 48 (8 B)
// The data segment of an atomic names the local buffer that receives the remote word's previous value.
//
// Extended ("masked") atomics: opcode ATOMIC_MASKED_FA with opmod bit 3 set selects the extended form, and
// opmod bits [2:0] give log2(operand bytes) - 2 (4 bytes: 0x08, 8 bytes: 0x09). The field boundary splits
// the operand into independent fields: a set bit marks the most significant bit of a field, and the carry out
// of that bit is dropped instead of entering the next field. Boundary 0 is an ordinary add of the whole
// operand; llMlx5MaskedAdd64/32 compute the result. The byte order the responder applies to its memory word,
// and that of the returned value, is a property of the QP (its atomic mode), set up by the host.
#pragma once

#include <stdint.h>
#include <string.h>

#include "device/hd.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the encoders assume a little-endian host and GPU");

// Opcodes (PRM "Send WQE opcodes"; MLX5_OPCODE_* in mlx5dv.h).
constexpr uint8_t kLlMlx5OpNop = 0x00;
constexpr uint8_t kLlMlx5OpRdmaWrite = 0x08;
constexpr uint8_t kLlMlx5OpRdmaWriteImm = 0x09;
constexpr uint8_t kLlMlx5OpAtomicCs = 0x11;
constexpr uint8_t kLlMlx5OpAtomicFa = 0x12;
constexpr uint8_t kLlMlx5OpAtomicMaskedCs = 0x14;
constexpr uint8_t kLlMlx5OpAtomicMaskedFa = 0x15;

// opmod of an extended atomic: bit 3 set, bits [2:0] = log2(operand bytes) - 2.
constexpr uint8_t kLlMlx5OpmodExtAtomic = 0x08;
constexpr uint8_t kLlMlx5OpmodExtAtomic4 = kLlMlx5OpmodExtAtomic | 0;
constexpr uint8_t kLlMlx5OpmodExtAtomic8 = kLlMlx5OpmodExtAtomic | 1;

// fm_ce_se flags (control segment byte 11; MLX5_WQE_CTRL_* in mlx5dv.h).
//   solicited [1]: raise a solicited event at the responder (send-type opcodes).
//   ce [3:2]: 0 = a CQE only on error, 2 = a CQE for this WQE.
//   fm [7:5]: 0 none, 1 initiator small fence, 2 fence, 3 strong ordering, 4 fence with initiator small
//   fence; mlx5dv.h's MLX5_WQE_CTRL_FENCE is 4 (the mode the mlx5 provider uses for IBV_SEND_FENCE: the WQE
//   waits for earlier RDMA reads and atomics of this QP to complete).
constexpr uint8_t kLlMlx5CtrlSolicited = 1 << 1;
constexpr uint8_t kLlMlx5CtrlCqUpdate = 2 << 2;
constexpr uint8_t kLlMlx5CtrlSmallFence = 1 << 5;
constexpr uint8_t kLlMlx5CtrlFence = 4 << 5;

constexpr uint32_t kLlMlx5InlineSeg = 0x80000000u;  // inline segment flag in its byte-count word
constexpr uint32_t kLlMlx5WqeBbBytes = 64;           // MLX5_SEND_WQE_BB
constexpr uint32_t kLlMlx5WqeBbShift = 6;            // MLX5_SEND_WQE_SHIFT
constexpr uint32_t kLlMlx5DsBytes = 16;              // the unit of the control segment's ds field
constexpr uint32_t kLlMlx5QpnMask = 0xffffffu;       // QP numbers are 24 bits
constexpr uint32_t kLlMlx5DsMask = 0x3f;             // ds is 6 bits
constexpr uint32_t kLlMlx5SqDbrIndex = 1;            // MLX5_SND_DBR: word 1 of the QP doorbell record

// Inline payloads are limited to what fits 2 WQEBBs: 128 - ctrl 16 - raddr 16 - inline header 4.
constexpr uint32_t kLlMlx5MaxInlineBytes = 2 * kLlMlx5WqeBbBytes - 2 * kLlMlx5DsBytes - 4;

// The local buffer of an RDMA write's source or an atomic's result, and the remote target.
struct LlMlx5Local {
  uint64_t addr;
  uint32_t lkey;
};
struct LlMlx5Remote {
  uint64_t addr;
  uint32_t rkey;
};

// ---- Byte order and stores -------------------------------------------------------------------------------

LL_HD inline uint32_t llMlx5Be32(uint32_t v) {
#ifdef __CUDA_ARCH__
  return __byte_perm(v, 0, 0x0123);
#else
  return __builtin_bswap32(v);
#endif
}

LL_HD inline uint16_t llMlx5Be16(uint16_t v) { return static_cast<uint16_t>((v >> 8) | (v << 8)); }

// Writes one 16-byte unit; each word holds its 4 bytes in memory order. dst is 16-byte aligned (a WQEBB
// slot plus a multiple of 16), so the GPU does it in one vector store.
LL_HD inline void llMlx5Store16(void* dst, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3) {
#ifdef __CUDA_ARCH__
  *static_cast<uint4*>(dst) = make_uint4(w0, w1, w2, w3);
#else
  const uint32_t w[4] = {w0, w1, w2, w3};
  memcpy(dst, w, sizeof(w));
#endif
}

// The unit `unit` of a WQE that starts at `slot` and continues at `next` (the following WQEBB of the ring).
LL_HD inline void* llMlx5Unit(void* slot, void* next, uint32_t unit) {
  const uint32_t perBb = kLlMlx5WqeBbBytes / kLlMlx5DsBytes;
  return unit < perBb ? static_cast<uint8_t*>(slot) + unit * kLlMlx5DsBytes
                      : static_cast<uint8_t*>(next) + (unit - perBb) * kLlMlx5DsBytes;
}

// WQEBB `wqeIdx` of a ring of 2^logWqeBbs WQEBBs at `sq`.
LL_HD inline void* llMlx5SqSlot(void* sq, uint32_t logWqeBbs, uint32_t wqeIdx) {
  return static_cast<uint8_t*>(sq) + ((wqeIdx & ((1u << logWqeBbs) - 1)) << kLlMlx5WqeBbShift);
}

LL_HD constexpr uint32_t llMlx5DsToWqeBbs(uint32_t ds) {
  return (ds * kLlMlx5DsBytes + kLlMlx5WqeBbBytes - 1) / kLlMlx5WqeBbBytes;
}

// ---- Segments ---------------------------------------------------------------------------------------------

LL_HD inline void llMlx5PutCtrl(void* seg, uint8_t opcode, uint8_t opmod, uint16_t wqeIdx, uint32_t qpn,
                                uint32_t ds, uint8_t fmCeSe) {
  const uint32_t word0 = static_cast<uint32_t>(opmod) << 24 | static_cast<uint32_t>(wqeIdx) << 8 | opcode;
  const uint32_t word1 = (qpn & kLlMlx5QpnMask) << 8 | (ds & kLlMlx5DsMask);
  llMlx5Store16(seg, llMlx5Be32(word0), llMlx5Be32(word1), llMlx5Be32(fmCeSe), 0);
}

LL_HD inline void llMlx5PutRaddr(void* seg, LlMlx5Remote remote) {
  llMlx5Store16(seg, llMlx5Be32(static_cast<uint32_t>(remote.addr >> 32)),
                llMlx5Be32(static_cast<uint32_t>(remote.addr)), llMlx5Be32(remote.rkey), 0);
}

LL_HD inline void llMlx5PutData(void* seg, LlMlx5Local local, uint32_t byteCount) {
  llMlx5Store16(seg, llMlx5Be32(byteCount), llMlx5Be32(local.lkey),
                llMlx5Be32(static_cast<uint32_t>(local.addr >> 32)),
                llMlx5Be32(static_cast<uint32_t>(local.addr)));
}

// Two be64 values: the atomic segment (add, compare) and the 8-byte masked fetch-add segment (add, boundary).
LL_HD inline void llMlx5PutPair64(void* seg, uint64_t first, uint64_t second) {
  llMlx5Store16(seg, llMlx5Be32(static_cast<uint32_t>(first >> 32)), llMlx5Be32(static_cast<uint32_t>(first)),
                llMlx5Be32(static_cast<uint32_t>(second >> 32)), llMlx5Be32(static_cast<uint32_t>(second)));
}

// Bytes [from, from + 16) of an inline segment: the header word (memory order), payload, zero padding.
LL_HD inline void llMlx5PutInlineUnit(void* dst, uint32_t header, const uint8_t* data, uint32_t len,
                                      uint32_t from) {
  uint8_t bytes[kLlMlx5DsBytes];
  for (uint32_t i = 0; i < kLlMlx5DsBytes; ++i) {
    const uint32_t pos = from + i;
    if (pos < 4) bytes[i] = static_cast<uint8_t>(header >> (8 * pos));
    else bytes[i] = pos - 4 < len ? data[pos - 4] : 0;
  }
  uint32_t w[4];
  memcpy(w, bytes, sizeof(w));
  llMlx5Store16(dst, w[0], w[1], w[2], w[3]);
}

// ---- WQEs -------------------------------------------------------------------------------------------------
// Each writes one WQE whose first WQEBB is `slot` (64-byte aligned) with producer counter `wqeIdx`, and
// returns the number of WQEBBs it used.

// A NOP: pads the ring, or with kLlMlx5CtrlCqUpdate asks for a CQE; requester CQEs come in order, so that
// CQE also retires every WQE before it.
LL_HD inline uint32_t llMlx5WriteNop(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe) {
  llMlx5PutCtrl(slot, kLlMlx5OpNop, 0, wqeIdx, qpn, 1, fmCeSe);
  return 1;
}

// RDMA write of len bytes (len < 2^31) from `local` to `remote`. A zero-length write carries no data
// segment, as the mlx5 provider leaves zero-length SGEs out of a WQE.
LL_HD inline uint32_t llMlx5WriteRdmaWrite(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                           LlMlx5Local local, uint32_t len, LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpRdmaWrite, 0, wqeIdx, qpn, len ? 3 : 2, fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  if (len) llMlx5PutData(s + 32, local, len);
  return 1;
}

// Size of an inline RDMA write of len bytes, in 16-byte units and in WQEBBs (to reserve before writing).
LL_HD constexpr uint32_t llMlx5InlineWriteDs(uint32_t len) { return 2 + (4 + len + 15) / 16; }
LL_HD constexpr uint32_t llMlx5InlineWriteWqeBbs(uint32_t len) {
  return llMlx5DsToWqeBbs(llMlx5InlineWriteDs(len));
}

// RDMA write of len <= kLlMlx5MaxInlineBytes bytes carried in the WQE. Up to 28 bytes fit one WQEBB; beyond,
// the WQE continues at `next`, the ring's following WQEBB (llMlx5SqSlot(sq, log, wqeIdx + 1)), which may be
// null when the WQE fits one WQEBB.
LL_HD inline uint32_t llMlx5WriteRdmaWriteInline(void* slot, void* next, uint16_t wqeIdx, uint32_t qpn,
                                                 uint8_t fmCeSe, const void* data, uint32_t len,
                                                 LlMlx5Remote remote) {
  const uint32_t ds = llMlx5InlineWriteDs(len);
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpRdmaWrite, 0, wqeIdx, qpn, ds, fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  const uint32_t header = llMlx5Be32(len | kLlMlx5InlineSeg);
  for (uint32_t unit = 2; unit < ds; ++unit)
    llMlx5PutInlineUnit(llMlx5Unit(slot, next, unit), header, static_cast<const uint8_t*>(data), len,
                        (unit - 2) * kLlMlx5DsBytes);
  return llMlx5DsToWqeBbs(ds);
}

// Inline writes of one 4- or 8-byte value (signals), stored remotely in the GPU's own byte order. Same bytes
// as llMlx5WriteRdmaWriteInline with &value, one WQEBB.
LL_HD inline uint32_t llMlx5WriteRdmaWriteInline4(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                                  uint32_t value, LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpRdmaWrite, 0, wqeIdx, qpn, llMlx5InlineWriteDs(4), fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  llMlx5Store16(s + 32, llMlx5Be32(4 | kLlMlx5InlineSeg), value, 0, 0);
  return 1;
}

LL_HD inline uint32_t llMlx5WriteRdmaWriteInline8(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                                  uint64_t value, LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpRdmaWrite, 0, wqeIdx, qpn, llMlx5InlineWriteDs(8), fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  llMlx5Store16(s + 32, llMlx5Be32(8 | kLlMlx5InlineSeg), static_cast<uint32_t>(value),
                static_cast<uint32_t>(value >> 32), 0);
  return 1;
}

// 64-bit fetch-add of `add` to the remote word; its previous value lands in the 8-byte `result` buffer.
LL_HD inline uint32_t llMlx5WriteFetchAdd64(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                            uint64_t add, LlMlx5Local result, LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpAtomicFa, 0, wqeIdx, qpn, 4, fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  llMlx5PutPair64(s + 32, add, 0);
  llMlx5PutData(s + 48, result, 8);
  return 1;
}

// Masked (extended) fetch-add of a 4-byte remote word; the previous value lands in the 4-byte `result`.
LL_HD inline uint32_t llMlx5WriteMaskedFetchAdd32(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                                  uint32_t add, uint32_t boundary, LlMlx5Local result,
                                                  LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpAtomicMaskedFa, kLlMlx5OpmodExtAtomic4, wqeIdx, qpn, 4, fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  llMlx5Store16(s + 32, llMlx5Be32(add), llMlx5Be32(boundary), 0, 0);
  llMlx5PutData(s + 48, result, 4);
  return 1;
}

// Masked (extended) fetch-add of an 8-byte remote word; the previous value lands in the 8-byte `result`.
LL_HD inline uint32_t llMlx5WriteMaskedFetchAdd64(void* slot, uint16_t wqeIdx, uint32_t qpn, uint8_t fmCeSe,
                                                  uint64_t add, uint64_t boundary, LlMlx5Local result,
                                                  LlMlx5Remote remote) {
  uint8_t* s = static_cast<uint8_t*>(slot);
  llMlx5PutCtrl(s, kLlMlx5OpAtomicMaskedFa, kLlMlx5OpmodExtAtomic8, wqeIdx, qpn, 4, fmCeSe);
  llMlx5PutRaddr(s + 16, remote);
  llMlx5PutPair64(s + 32, add, boundary);
  llMlx5PutData(s + 48, result, 8);
  return 1;
}

// The value a masked fetch-add leaves in the remote word: a per-field sum, the carry out of each boundary bit
// dropped. Adding the operands with their boundary bits cleared lets a carry reach a boundary bit but never
// leave it; the boundary bits are then the sum of the two bits and that carry (an exclusive or).
LL_HD constexpr uint64_t llMlx5MaskedAdd64(uint64_t old, uint64_t add, uint64_t boundary) {
  return ((old & ~boundary) + (add & ~boundary)) ^ ((old ^ add) & boundary);
}
LL_HD constexpr uint32_t llMlx5MaskedAdd32(uint32_t old, uint32_t add, uint32_t boundary) {
  return ((old & ~boundary) + (add & ~boundary)) ^ ((old ^ add) & boundary);
}

// ---- Doorbells --------------------------------------------------------------------------------------------

// The send doorbell record (word kLlMlx5SqDbrIndex of the QP's record) after posting up to producer counter
// pi: be32 of the 16-bit counter, as a word to store natively.
LL_HD inline uint32_t llMlx5SqDbrValue(uint16_t pi) { return llMlx5Be32(pi); }

// The 8 bytes written to the BlueFlame register to ring the doorbell: the first 8 bytes of the last posted
// WQE's control segment (opmod, wqe_index, opcode, qpn, ds), as a word to store natively in one 64-bit write.
LL_HD inline uint64_t llMlx5BlueFlameValue(const void* wqe) {
#ifdef __CUDA_ARCH__
  return *static_cast<const uint64_t*>(wqe);
#else
  uint64_t v;
  memcpy(&v, wqe, sizeof(v));
  return v;
#endif
}
