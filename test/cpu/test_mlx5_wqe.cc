// The mlx5 WQE encoders and CQE parsing (transport/ibgda/mlx5_wqe.h, mlx5_cqe.h), checked two independent
// ways: against the same entries built with <infiniband/mlx5dv.h>'s structs and helpers, and against golden
// bytes written out by hand from the PRM layouts (the byte map in mlx5_wqe.h), so that one mistake cannot
// pass both. Slots are pre-filled with a sentinel so that bytes an encoder must not touch are checked too.
#include <infiniband/mlx5dv.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "harness.h"
#include "transport/ibgda/mlx5_cqe.h"
#include "transport/ibgda/mlx5_wqe.h"

namespace {

constexpr uint8_t S = 0xab;  // sentinel: bytes no encoder may write

struct alignas(64) Ring {
  uint8_t b[4 * 64];
  Ring() { memset(b, S, sizeof(b)); }
  uint8_t* slot(uint32_t i) { return b + 64 * i; }
};

const uint8_t kUntouched[128] = {S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
                                 S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
                                 S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
                                 S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
                                 S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S};

void expectBytes(const uint8_t* got, const uint8_t* want, size_t n, const char* what) {
  for (size_t i = 0; i < n; ++i)
    EXPECT_MSG(got[i] == want[i], "%s: byte %zu is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
}

// ---- The same entries built with mlx5dv.h (reserved bytes zeroed, as the encoders write them) ----

void dvCtrl(uint8_t* s, uint16_t idx, uint8_t opcode, uint8_t opmod, uint32_t qpn, uint8_t fm, uint8_t ds) {
  memset(s, 0, sizeof(mlx5_wqe_ctrl_seg));
  mlx5dv_set_ctrl_seg(reinterpret_cast<mlx5_wqe_ctrl_seg*>(s), idx, opcode, opmod, qpn, fm, ds, 0, 0);
}

void dvRaddr(uint8_t* s, uint64_t addr, uint32_t rkey) {
  auto* r = reinterpret_cast<mlx5_wqe_raddr_seg*>(s);
  r->raddr = htobe64(addr);
  r->rkey = htobe32(rkey);
  r->reserved = 0;
}

void dvData(uint8_t* s, uint64_t addr, uint32_t lkey, uint32_t len) {
  mlx5dv_set_data_seg(reinterpret_cast<mlx5_wqe_data_seg*>(s), len, lkey, addr);
}

void dvAtomic(uint8_t* s, uint64_t swapAdd, uint64_t compare) {
  auto* a = reinterpret_cast<mlx5_wqe_atomic_seg*>(s);
  a->swap_add = htobe64(swapAdd);
  a->compare = htobe64(compare);
}

// Inline write into a contiguous 128-byte buffer.
void dvInlineWrite(uint8_t* s, uint16_t idx, uint32_t qpn, uint8_t fm, const void* data, uint32_t len,
                   uint64_t raddr, uint32_t rkey) {
  const uint32_t bytes = (sizeof(mlx5_wqe_inl_data_seg) + len + 15) / 16 * 16;
  dvCtrl(s, idx, MLX5_OPCODE_RDMA_WRITE, 0, qpn, fm, static_cast<uint8_t>(2 + bytes / 16));
  dvRaddr(s + 16, raddr, rkey);
  auto* h = reinterpret_cast<mlx5_wqe_inl_data_seg*>(s + 32);
  h->byte_count = htobe32(len | MLX5_INLINE_SEG);
  memset(s + 32 + sizeof(*h), 0, bytes - sizeof(*h));
  memcpy(s + 32 + sizeof(*h), data, len);
}

// The 4-byte masked fetch-add segment, which mlx5dv.h does not define: be32 add, be32 boundary, 8 reserved.
struct __attribute__((packed)) DvMaskedFa32 {
  uint32_t add;
  uint32_t boundary;
  uint64_t reserved;
};

uint64_t refMaskedAdd(uint64_t old, uint64_t add, uint64_t boundary, int bits) {
  uint64_t out = 0;
  unsigned carry = 0;
  for (int i = 0; i < bits; ++i) {
    const unsigned sum = ((old >> i) & 1) + ((add >> i) & 1) + carry;
    out |= static_cast<uint64_t>(sum & 1) << i;
    carry = ((boundary >> i) & 1) ? 0 : sum >> 1;
  }
  return out;
}

std::vector<uint8_t> bytesOf(uint32_t v) {
  std::vector<uint8_t> b(4);
  memcpy(b.data(), &v, 4);
  return b;
}

}  // namespace

LL_TEST(constants_match_mlx5dv) {
  static_assert(kLlMlx5OpNop == MLX5_OPCODE_NOP, "");
  static_assert(kLlMlx5OpRdmaWrite == MLX5_OPCODE_RDMA_WRITE, "");
  static_assert(kLlMlx5OpRdmaWriteImm == MLX5_OPCODE_RDMA_WRITE_IMM, "");
  static_assert(kLlMlx5OpAtomicCs == MLX5_OPCODE_ATOMIC_CS, "");
  static_assert(kLlMlx5OpAtomicFa == MLX5_OPCODE_ATOMIC_FA, "");
  static_assert(kLlMlx5OpAtomicMaskedCs == MLX5_OPCODE_ATOMIC_MASKED_CS, "");
  static_assert(kLlMlx5OpAtomicMaskedFa == MLX5_OPCODE_ATOMIC_MASKED_FA, "");
  static_assert(kLlMlx5CtrlCqUpdate == MLX5_WQE_CTRL_CQ_UPDATE, "");
  static_assert(kLlMlx5CtrlSolicited == MLX5_WQE_CTRL_SOLICITED, "");
  static_assert(kLlMlx5CtrlFence == MLX5_WQE_CTRL_FENCE, "");
  static_assert(kLlMlx5CtrlSmallFence == MLX5_WQE_CTRL_INITIATOR_SMALL_FENCE, "");
  static_assert(kLlMlx5InlineSeg == MLX5_INLINE_SEG, "");
  static_assert(kLlMlx5WqeBbBytes == MLX5_SEND_WQE_BB, "");
  static_assert(kLlMlx5WqeBbShift == MLX5_SEND_WQE_SHIFT, "");
  static_assert(kLlMlx5SqDbrIndex == MLX5_SND_DBR, "");
  static_assert(kLlMlx5CqeReq == MLX5_CQE_REQ && kLlMlx5CqeRespWrImm == MLX5_CQE_RESP_WR_IMM, "");
  static_assert(kLlMlx5CqeRespSend == MLX5_CQE_RESP_SEND, "");
  static_assert(kLlMlx5CqeRespSendImm == MLX5_CQE_RESP_SEND_IMM, "");
  static_assert(kLlMlx5CqeRespSendInv == MLX5_CQE_RESP_SEND_INV, "");
  static_assert(kLlMlx5CqeReqErr == MLX5_CQE_REQ_ERR && kLlMlx5CqeRespErr == MLX5_CQE_RESP_ERR, "");
  static_assert(kLlMlx5CqeInvalid == MLX5_CQE_INVALID, "");
  EXPECT_EQ(kLlMlx5MaxInlineBytes, 92u);
  EXPECT_EQ(static_cast<int>(kLlMlx5OpmodExtAtomic4), 0x08);
  EXPECT_EQ(static_cast<int>(kLlMlx5OpmodExtAtomic8), 0x09);
}

LL_TEST(layouts_match_mlx5dv) {
  static_assert(sizeof(mlx5_wqe_ctrl_seg) == kLlMlx5DsBytes, "");
  static_assert(sizeof(mlx5_wqe_raddr_seg) == kLlMlx5DsBytes, "");
  static_assert(sizeof(mlx5_wqe_data_seg) == kLlMlx5DsBytes, "");
  static_assert(sizeof(mlx5_wqe_atomic_seg) == kLlMlx5DsBytes, "");
  static_assert(sizeof(DvMaskedFa32) == kLlMlx5DsBytes, "");
  static_assert(sizeof(mlx5_wqe_inl_data_seg) == 4, "");
  static_assert(offsetof(mlx5_wqe_ctrl_seg, qpn_ds) == 4, "");
  static_assert(offsetof(mlx5_wqe_ctrl_seg, signature) == 8, "");
  static_assert(offsetof(mlx5_wqe_ctrl_seg, dci_stream_channel_id) == 9, "");
  static_assert(offsetof(mlx5_wqe_ctrl_seg, fm_ce_se) == 11, "");
  static_assert(offsetof(mlx5_wqe_ctrl_seg, imm) == 12, "");
  static_assert(offsetof(mlx5_wqe_raddr_seg, rkey) == 8, "");
  static_assert(offsetof(mlx5_wqe_data_seg, lkey) == 4 && offsetof(mlx5_wqe_data_seg, addr) == 8, "");
  static_assert(sizeof(mlx5_cqe64) == kLlMlx5CqeBytes && sizeof(mlx5_err_cqe) == kLlMlx5CqeBytes, "");
  static_assert(offsetof(mlx5_cqe64, byte_cnt) == kLlMlx5CqeByteCntOffset, "");
  static_assert(offsetof(mlx5_cqe64, sop_drop_qpn) == kLlMlx5CqeQpnOffset, "");
  static_assert(offsetof(mlx5_cqe64, wqe_counter) == kLlMlx5CqeWqeCounterOffset, "");
  static_assert(offsetof(mlx5_cqe64, op_own) == kLlMlx5CqeOpOwnOffset, "");
  static_assert(offsetof(mlx5_err_cqe, vendor_err_synd) == kLlMlx5CqeVendorSyndOffset, "");
  static_assert(offsetof(mlx5_err_cqe, syndrome) == kLlMlx5CqeSyndromeOffset, "");
  static_assert(offsetof(mlx5_err_cqe, s_wqe_opcode_qpn) == kLlMlx5CqeQpnOffset, "");
  static_assert(offsetof(mlx5_err_cqe, wqe_counter) == kLlMlx5CqeWqeCounterOffset, "");
  static_assert(offsetof(mlx5_err_cqe, op_own) == kLlMlx5CqeOpOwnOffset, "");
  EXPECT_EQ(llMlx5DsToWqeBbs(1), 1u);
  EXPECT_EQ(llMlx5DsToWqeBbs(4), 1u);
  EXPECT_EQ(llMlx5DsToWqeBbs(5), 2u);
  EXPECT_EQ(llMlx5DsToWqeBbs(8), 2u);
}

LL_TEST(nop_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteNop(r.slot(0), 3, 0x1234, kLlMlx5CtrlCqUpdate), 1u);
  const uint8_t want[64] = {
      // rows: ctrl, untouched x3
      0x00, 0x00, 0x03, 0x00, 0x00, 0x12, 0x34, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "nop");
}

// 4096 bytes from 0x1000 (lkey 0x11) to 0x2000 (rkey 0x22), wqe index 5, qpn 0x1234, with a CQE.
LL_TEST(rdma_write_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteRdmaWrite(r.slot(0), 5, 0x1234, kLlMlx5CtrlCqUpdate, {0x1000, 0x11}, 4096,
                                 {0x2000, 0x22}),
            1u);
  const uint8_t want[64] = {
      // rows: ctrl, raddr, data, untouched
      0x00, 0x00, 0x05, 0x08, 0x00, 0x12, 0x34, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "rdma write");
}

// Every byte of every field distinct and non-zero, so a swapped half or word shows.
LL_TEST(rdma_write_golden_distinct_bytes) {
  Ring r;
  llMlx5WriteRdmaWrite(r.slot(0), 0xbeef, 0xabcdef, kLlMlx5CtrlFence | kLlMlx5CtrlCqUpdate,
                       {0x0123456789abcdefull, 0x76543210}, 0x7fffffff, {0xfedcba9876543210ull, 0x89abcdef});
  const uint8_t want[64] = {
      // rows: ctrl, raddr, data, untouched
      0x00, 0xbe, 0xef, 0x08, 0xab, 0xcd, 0xef, 0x03, 0x00, 0x00, 0x00, 0x88, 0x00, 0x00, 0x00, 0x00,
      0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x00, 0x00, 0x00,
      0x7f, 0xff, 0xff, 0xff, 0x76, 0x54, 0x32, 0x10, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "rdma write");
}

LL_TEST(rdma_write_zero_length) {
  Ring r;
  llMlx5WriteRdmaWrite(r.slot(0), 1, 0x1234, 0, {0x1000, 0x11}, 0, {0x2000, 0x22});
  const uint8_t want[64] = {
      // rows: ctrl, raddr, untouched x2
      0x00, 0x00, 0x01, 0x08, 0x00, 0x12, 0x34, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "zero-length write");
}

LL_TEST(inline4_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteRdmaWriteInline4(r.slot(0), 0x0102, 0xabcdef, kLlMlx5CtrlFence | kLlMlx5CtrlCqUpdate,
                                        0x11223344, {0x00007f1234567890ull, 0xdeadbeef}),
            1u);
  const uint8_t want[64] = {
      // rows: ctrl, raddr, inline, untouched
      0x00, 0x01, 0x02, 0x08, 0xab, 0xcd, 0xef, 0x03, 0x00, 0x00, 0x00, 0x88, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x7f, 0x12, 0x34, 0x56, 0x78, 0x90, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x00,
      0x80, 0x00, 0x00, 0x04, 0x44, 0x33, 0x22, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "inline 4");
}

LL_TEST(inline8_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteRdmaWriteInline8(r.slot(0), 0x0103, 0xabcdef, kLlMlx5CtrlCqUpdate,
                                        0x0102030405060708ull, {0x00007f1234567890ull, 0xdeadbeef}),
            1u);
  const uint8_t want[64] = {
      // rows: ctrl, raddr, inline, untouched
      0x00, 0x01, 0x03, 0x08, 0xab, 0xcd, 0xef, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x7f, 0x12, 0x34, 0x56, 0x78, 0x90, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x00,
      0x80, 0x00, 0x00, 0x08, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(0), want, sizeof(want), "inline 8");
}

// 40 inline bytes need 5 units: the WQE at the ring's last WQEBB (index 0xffff of a 4-WQEBB ring) continues
// in WQEBB 0, and the 16-bit index 0xffff is carried as is.
LL_TEST(inline_spans_two_wqebbs_across_ring_end) {
  Ring r;
  uint8_t data[40];
  for (int i = 0; i < 40; ++i) data[i] = static_cast<uint8_t>(i);
  const uint32_t idx = 0xffff;
  EXPECT_EQ(llMlx5InlineWriteWqeBbs(40), 2u);
  EXPECT(llMlx5SqSlot(r.b, 2, idx) == r.slot(3));
  EXPECT(llMlx5SqSlot(r.b, 2, idx + 1) == r.slot(0));
  EXPECT_EQ(llMlx5WriteRdmaWriteInline(llMlx5SqSlot(r.b, 2, idx), llMlx5SqSlot(r.b, 2, idx + 1),
                                       static_cast<uint16_t>(idx), 0x000001, 0, data, 40,
                                       {0x1122334455667788ull, 0x01020304}),
            2u);
  const uint8_t wantLast[64] = {
      // rows: ctrl, raddr, inline (header and the first 28 bytes)
      0x00, 0xff, 0xff, 0x08, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00,
      0x80, 0x00, 0x00, 0x28, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
      0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
  };
  const uint8_t wantFirst[64] = {
      0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x00, 0x00, 0x00, 0x00,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
      S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
  };
  expectBytes(r.slot(3), wantLast, 64, "WQEBB 3");
  expectBytes(r.slot(0), wantFirst, 64, "WQEBB 0");
  expectBytes(r.slot(1), kUntouched, 128, "WQEBBs 1-2");
}

LL_TEST(fetch_add64_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteFetchAdd64(r.slot(0), 7, 0x1234, kLlMlx5CtrlCqUpdate, 0x0102030405060708ull,
                                  {0xdeadb000ull, 0x11}, {0x00007f0000002000ull, 0x22}),
            1u);
  const uint8_t want[64] = {
      // rows: ctrl, raddr, atomic, data
      0x00, 0x00, 0x07, 0x12, 0x00, 0x12, 0x34, 0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00,
      0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xb0, 0x00,
  };
  expectBytes(r.slot(0), want, sizeof(want), "fetch-add");
  expectBytes(r.slot(1), kUntouched, 64, "next WQEBB");
}

LL_TEST(masked_fetch_add32_golden) {
  Ring r;
  EXPECT_EQ(llMlx5WriteMaskedFetchAdd32(r.slot(0), 8, 0x1234, kLlMlx5CtrlCqUpdate, 0x01020304, 0x80008000,
                                        {0x1000, 0x11}, {0x2000, 0x22}),
            1u);
  const uint8_t want[64] = {
      // rows: ctrl, raddr, masked, data
      0x08, 0x00, 0x08, 0x15, 0x00, 0x12, 0x34, 0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00,
      0x01, 0x02, 0x03, 0x04, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
  };
  expectBytes(r.slot(0), want, sizeof(want), "masked fetch-add 32");
}

LL_TEST(masked_fetch_add64_golden) {
  Ring r;
  llMlx5WriteMaskedFetchAdd64(r.slot(0), 9, 0x1234, kLlMlx5CtrlCqUpdate | kLlMlx5CtrlSmallFence,
                              0x0000000100000001ull, 0x8000000080000000ull, {0x1008, 0x11}, {0x2008, 0x22});
  const uint8_t want[64] = {
      // rows: ctrl, raddr, masked, data
      0x09, 0x00, 0x09, 0x15, 0x00, 0x12, 0x34, 0x04, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x08, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x08,
  };
  expectBytes(r.slot(0), want, sizeof(want), "masked fetch-add 64");
}

// Random field values; each encoder against the same WQE built with mlx5dv.h, over the whole 64-byte slot.
LL_TEST(encoders_match_mlx5dv_random) {
  std::mt19937_64 rng(12345);
  for (int iter = 0; iter < 2000; ++iter) {
    const uint16_t idx = static_cast<uint16_t>(rng());
    const uint32_t qpn = static_cast<uint32_t>(rng()) & kLlMlx5QpnMask;
    const uint8_t fm = static_cast<uint8_t>(rng()) & (kLlMlx5CtrlFence | kLlMlx5CtrlSmallFence |
                                                      kLlMlx5CtrlCqUpdate | kLlMlx5CtrlSolicited);
    const uint64_t laddr = rng(), raddr = rng(), a = rng(), b = rng();
    const uint32_t lkey = static_cast<uint32_t>(rng()), rkey = static_cast<uint32_t>(rng());
    const uint32_t len = 1 + static_cast<uint32_t>(rng() % 0x7fffffff);
    Ring mine, dv;
    memset(dv.b, 0, sizeof(dv.b));
    memset(mine.b, 0, sizeof(mine.b));

    llMlx5WriteNop(mine.slot(0), idx, qpn, fm);
    dvCtrl(dv.slot(0), idx, MLX5_OPCODE_NOP, 0, qpn, fm, 1);

    llMlx5WriteRdmaWrite(mine.slot(1), idx, qpn, fm, {laddr, lkey}, len, {raddr, rkey});
    dvCtrl(dv.slot(1), idx, MLX5_OPCODE_RDMA_WRITE, 0, qpn, fm, 3);
    dvRaddr(dv.slot(1) + 16, raddr, rkey);
    dvData(dv.slot(1) + 32, laddr, lkey, len);

    llMlx5WriteFetchAdd64(mine.slot(2), idx, qpn, fm, a, {laddr, lkey}, {raddr, rkey});
    dvCtrl(dv.slot(2), idx, MLX5_OPCODE_ATOMIC_FA, 0, qpn, fm, 4);
    dvRaddr(dv.slot(2) + 16, raddr, rkey);
    dvAtomic(dv.slot(2) + 32, a, 0);
    dvData(dv.slot(2) + 48, laddr, lkey, 8);

    // The 8-byte masked fetch-add segment has the atomic segment's shape: addend, then the boundary mask.
    llMlx5WriteMaskedFetchAdd64(mine.slot(3), idx, qpn, fm, a, b, {laddr, lkey}, {raddr, rkey});
    dvCtrl(dv.slot(3), idx, MLX5_OPCODE_ATOMIC_MASKED_FA, 0x09, qpn, fm, 4);
    dvRaddr(dv.slot(3) + 16, raddr, rkey);
    dvAtomic(dv.slot(3) + 32, a, b);
    dvData(dv.slot(3) + 48, laddr, lkey, 8);
    expectBytes(mine.b, dv.b, sizeof(dv.b), "nop / write / fetch-add / masked fetch-add 64");

    Ring mine32, dv32;
    memset(dv32.b, 0, sizeof(dv32.b));
    memset(mine32.b, 0, sizeof(mine32.b));
    llMlx5WriteMaskedFetchAdd32(mine32.slot(0), idx, qpn, fm, static_cast<uint32_t>(a),
                                static_cast<uint32_t>(b), {laddr, lkey}, {raddr, rkey});
    dvCtrl(dv32.slot(0), idx, MLX5_OPCODE_ATOMIC_MASKED_FA, 0x08, qpn, fm, 4);
    dvRaddr(dv32.slot(0) + 16, raddr, rkey);
    const DvMaskedFa32 seg = {htobe32(static_cast<uint32_t>(a)), htobe32(static_cast<uint32_t>(b)), 0};
    memcpy(dv32.slot(0) + 32, &seg, sizeof(seg));
    dvData(dv32.slot(0) + 48, laddr, lkey, 4);
    expectBytes(mine32.b, dv32.b, 64, "masked fetch-add 32");
  }
}

// Every inline length against mlx5dv.h's inline segment, over two WQEBBs; the 4- and 8-byte forms equal the
// general one.
LL_TEST(inline_matches_mlx5dv_every_length) {
  uint8_t data[kLlMlx5MaxInlineBytes];
  for (uint32_t i = 0; i < sizeof(data); ++i) data[i] = static_cast<uint8_t>(0x5a ^ (i * 37));
  for (uint32_t len = 0; len <= kLlMlx5MaxInlineBytes; ++len) {
    Ring mine, dv;
    const uint32_t bbs = llMlx5WriteRdmaWriteInline(mine.slot(0), mine.slot(1), 0x4321, 0x77,
                                                    kLlMlx5CtrlCqUpdate, data, len, {0x1234567890ull, 0x55});
    dvInlineWrite(dv.slot(0), 0x4321, 0x77, kLlMlx5CtrlCqUpdate, data, len, 0x1234567890ull, 0x55);
    EXPECT_EQ(bbs, len <= 28 ? 1u : 2u);
    EXPECT_EQ(bbs, llMlx5InlineWriteWqeBbs(len));
    char what[32];
    snprintf(what, sizeof(what), "inline len %u", len);
    expectBytes(mine.b, dv.b, sizeof(dv.b), what);
  }
  const uint32_t v4 = 0xa1b2c3d4;
  const uint64_t v8 = 0x0f1e2d3c4b5a6978ull;
  Ring g4, f4, g8, f8;
  llMlx5WriteRdmaWriteInline(g4.slot(0), nullptr, 9, 0x77, 0, &v4, 4, {0x1000, 0x55});
  llMlx5WriteRdmaWriteInline4(f4.slot(0), 9, 0x77, 0, v4, {0x1000, 0x55});
  llMlx5WriteRdmaWriteInline(g8.slot(0), nullptr, 9, 0x77, 0, &v8, 8, {0x1000, 0x55});
  llMlx5WriteRdmaWriteInline8(f8.slot(0), 9, 0x77, 0, v8, {0x1000, 0x55});
  expectBytes(f4.b, g4.b, sizeof(g4.b), "inline 4 vs general");
  expectBytes(f8.b, g8.b, sizeof(g8.b), "inline 8 vs general");
}

LL_TEST(masked_add_field_boundary) {
  // Hand examples: no boundary is a plain add; every bit a boundary is an exclusive or; two 32-bit
  // counters in one word do not carry into each other.
  EXPECT_EQ(llMlx5MaskedAdd64(0xffffffffull, 1, 0), 0x100000000ull);
  EXPECT_EQ(llMlx5MaskedAdd64(0xf0f0ull, 0xff00ull, ~0ull), 0x0ff0ull);
  EXPECT_EQ(llMlx5MaskedAdd64(0x00000001ffffffffull, 0x0000000100000001ull, 0x8000000080000000ull),
            0x0000000200000000ull);
  EXPECT_EQ(llMlx5MaskedAdd32(0x0000ffffu, 0x00010001u, 0x80008000u), 0x00010000u);
  EXPECT_EQ(llMlx5MaskedAdd32(0xffffffffu, 1u, 0u), 0u);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t old = rng(), add = rng(), boundary = rng() & rng();
    EXPECT_EQ(llMlx5MaskedAdd64(old, add, boundary), refMaskedAdd(old, add, boundary, 64));
    const uint32_t o32 = static_cast<uint32_t>(old), a32 = static_cast<uint32_t>(add);
    const uint32_t b32 = static_cast<uint32_t>(boundary);
    EXPECT_EQ(static_cast<uint64_t>(llMlx5MaskedAdd32(o32, a32, b32)), refMaskedAdd(o32, a32, b32, 32));
  }
}

LL_TEST(sq_doorbell_and_blueflame) {
  EXPECT(bytesOf(llMlx5SqDbrValue(0x1234)) == (std::vector<uint8_t>{0x00, 0x00, 0x12, 0x34}));
  const uint32_t wrapped = 0x10005;  // producer counters wrap at 16 bits
  EXPECT(bytesOf(llMlx5SqDbrValue(static_cast<uint16_t>(wrapped))) == (std::vector<uint8_t>{0, 0, 0, 5}));
  Ring r;
  llMlx5WriteRdmaWrite(r.slot(0), 5, 0x1234, kLlMlx5CtrlCqUpdate, {0x1000, 0x11}, 4096, {0x2000, 0x22});
  const uint64_t bf = llMlx5BlueFlameValue(r.slot(0));
  uint8_t got[8];
  memcpy(got, &bf, sizeof(got));
  const uint8_t want[8] = {0x00, 0x00, 0x05, 0x08, 0x00, 0x12, 0x34, 0x03};
  expectBytes(got, want, sizeof(want), "BlueFlame word");
  mlx5_wqe_ctrl_seg ctrl;
  mlx5dv_set_ctrl_seg(&ctrl, 5, MLX5_OPCODE_RDMA_WRITE, 0, 0x1234, MLX5_WQE_CTRL_CQ_UPDATE, 3, 0, 0);
  expectBytes(got, reinterpret_cast<const uint8_t*>(&ctrl), 8, "BlueFlame word vs mlx5dv");
}

LL_TEST(cqe_success_parse) {
  // Requester CQE of a 64-bit fetch-add: 8 bytes, WQE opcode 0x12, qpn 0x1234, wqe_counter 7, owner 0.
  uint8_t cqe[64] = {};
  const uint8_t tail[20] = {0x00, 0x00, 0x00, 0x08,  // 44: byte_cnt
                            0, 0, 0, 0, 0, 0, 0, 0,  // 48: timestamp
                            0x12, 0x00, 0x12, 0x34,  // 56: WQE opcode, qpn
                            0x00, 0x07,              // 60: wqe_counter
                            0x00,                    // 62: signature
                            0x00};                   // 63: op_own: REQ, owner 0
  memcpy(cqe + 44, tail, sizeof(tail));
  mlx5_cqe64 dv;
  memset(&dv, 0, sizeof(dv));
  dv.byte_cnt = htobe32(8);
  dv.sop_drop_qpn = htobe32(MLX5_OPCODE_ATOMIC_FA << 24 | 0x1234);
  dv.wqe_counter = htobe16(7);
  dv.op_own = MLX5_CQE_REQ << 4;
  expectBytes(cqe, reinterpret_cast<const uint8_t*>(&dv), 64, "hand CQE vs mlx5_cqe64");
  const LlMlx5Cqe c = llMlx5ParseCqe(cqe);
  EXPECT_EQ(static_cast<int>(c.opcode), static_cast<int>(kLlMlx5CqeReq));
  EXPECT_EQ(static_cast<int>(c.owner), 0);
  EXPECT_EQ(static_cast<int>(c.wqeOpcode), static_cast<int>(kLlMlx5OpAtomicFa));
  EXPECT_EQ(c.qpn, 0x1234u);
  EXPECT_EQ(static_cast<int>(c.wqeCounter), 7);
  EXPECT_EQ(c.byteCount, 8u);
  EXPECT(!llMlx5CqeIsError(c.opcode));
  EXPECT_EQ(static_cast<int>(llMlx5CqeOpcode(cqe[63])), static_cast<int>(mlx5dv_get_cqe_opcode(&dv)));
  EXPECT_EQ(static_cast<int>(llMlx5CqeOwner(cqe[63])), static_cast<int>(mlx5dv_get_cqe_owner(&dv)));
}

LL_TEST(cqe_error_parse) {
  // Requester error: REMOTE_ACCESS_ERR (0x13), vendor syndrome 0x88, for an RDMA write (0x08) on qpn 0xabcdef
  // at wqe_counter 0x1234, owner 1.
  uint8_t cqe[64] = {};
  const uint8_t tail[10] = {0x88, 0x13,              // 54: vendor_err_synd, syndrome
                            0x08, 0xab, 0xcd, 0xef,  // 56: WQE opcode, qpn
                            0x12, 0x34,              // 60: wqe_counter
                            0x00,                    // 62: signature
                            0xd1};                   // 63: op_own: REQ_ERR, owner 1
  memcpy(cqe + 54, tail, sizeof(tail));
  mlx5_err_cqe dv;
  memset(&dv, 0, sizeof(dv));
  dv.vendor_err_synd = 0x88;
  dv.syndrome = MLX5_CQE_SYNDROME_REMOTE_ACCESS_ERR;
  dv.s_wqe_opcode_qpn = htobe32(MLX5_OPCODE_RDMA_WRITE << 24 | 0xabcdef);
  dv.wqe_counter = htobe16(0x1234);
  dv.op_own = MLX5_CQE_REQ_ERR << 4 | 1;
  expectBytes(cqe, reinterpret_cast<const uint8_t*>(&dv), 64, "hand CQE vs mlx5_err_cqe");
  const LlMlx5Cqe c = llMlx5ParseCqe(cqe);
  EXPECT_EQ(static_cast<int>(c.opcode), static_cast<int>(kLlMlx5CqeReqErr));
  EXPECT(llMlx5CqeIsError(c.opcode));
  EXPECT(llMlx5CqeIsError(kLlMlx5CqeRespErr));
  EXPECT_EQ(static_cast<int>(c.owner), 1);
  EXPECT_EQ(static_cast<int>(c.syndrome), 0x13);
  EXPECT_EQ(static_cast<int>(c.vendorSyndrome), 0x88);
  EXPECT_EQ(static_cast<int>(c.wqeOpcode), static_cast<int>(kLlMlx5OpRdmaWrite));
  EXPECT_EQ(c.qpn, 0xabcdefu);
  EXPECT_EQ(static_cast<int>(c.wqeCounter), 0x1234);
  EXPECT_EQ(std::string(llMlx5SyndromeName(c.syndrome)), std::string("REMOTE_ACCESS_ERR"));
}

// A 4-entry CQ written by a simulated NIC over several passes: the consumer sees exactly the CQEs written, in
// order, whatever the ring was initialised with (opcode INVALID, owner 0 or 1).
LL_TEST(cqe_ownership_wraparound) {
  const uint32_t logSize = 2, size = 1u << logSize;
  for (uint8_t init : {uint8_t{0xf0}, uint8_t{0xf1}}) {
    uint8_t cq[size * 64];
    for (uint32_t i = 0; i < size; ++i) cq[i * 64 + kLlMlx5CqeOpOwnOffset] = init;
    uint32_t produced = 0, consumed = 0;
    const uint32_t batches[] = {3, 4, 1, 4, 2, 3, 4};
    for (uint32_t batch : batches) {
      for (uint32_t k = 0; k < batch; ++k, ++produced) {  // the NIC's n-th CQE, owner = pass parity
        uint8_t* e = cq + (produced % size) * 64;
        memset(e, 0, 64);
        const uint16_t counter = llMlx5Be16(static_cast<uint16_t>(produced));
        memcpy(e + kLlMlx5CqeWqeCounterOffset, &counter, 2);
        e[kLlMlx5CqeOpOwnOffset] = static_cast<uint8_t>(kLlMlx5CqeReq << 4 | ((produced >> logSize) & 1));
      }
      for (;;) {
        const uint8_t* e = static_cast<const uint8_t*>(llMlx5CqeAt(cq, logSize, consumed));
        if (!llMlx5CqeSwOwned(e[kLlMlx5CqeOpOwnOffset], consumed, logSize)) break;
        EXPECT_EQ(static_cast<uint32_t>(llMlx5ParseCqe(e).wqeCounter), consumed);
        ++consumed;
      }
      EXPECT_EQ(consumed, produced);
    }
    EXPECT_EQ(consumed, 21u);
  }
  // Pass parity across the 32-bit wrap of the consumer index.
  EXPECT(llMlx5CqeSwOwned(0x01, 0xfffffffcu, 2));
  EXPECT(!llMlx5CqeSwOwned(0x00, 0xffffffffu, 2));
  EXPECT(llMlx5CqeSwOwned(0x00, 0u, 2));
  EXPECT(!llMlx5CqeSwOwned(0x01, 0u, 2));
  EXPECT(!llMlx5CqeSwOwned(0xf0, 0u, 2));
}

LL_TEST(cq_doorbell_value) {
  EXPECT(bytesOf(llMlx5CqDbrValue(5)) == (std::vector<uint8_t>{0x00, 0x00, 0x00, 0x05}));
  EXPECT(bytesOf(llMlx5CqDbrValue(0x01234567)) == (std::vector<uint8_t>{0x00, 0x23, 0x45, 0x67}));
  EXPECT_EQ(kLlMlx5CqDbrSetCiIndex, 0u);
}

LL_TEST(syndrome_names) {
  struct Name {
    uint8_t dv;
    uint8_t ll;
    const char* name;
  };
  const Name names[] = {
      {MLX5_CQE_SYNDROME_LOCAL_LENGTH_ERR, kLlMlx5SyndLocalLengthErr, "LOCAL_LENGTH_ERR"},
      {MLX5_CQE_SYNDROME_LOCAL_QP_OP_ERR, kLlMlx5SyndLocalQpOpErr, "LOCAL_QP_OP_ERR"},
      {MLX5_CQE_SYNDROME_LOCAL_PROT_ERR, kLlMlx5SyndLocalProtErr, "LOCAL_PROT_ERR"},
      {MLX5_CQE_SYNDROME_WR_FLUSH_ERR, kLlMlx5SyndWrFlushErr, "WR_FLUSH_ERR"},
      {MLX5_CQE_SYNDROME_MW_BIND_ERR, kLlMlx5SyndMwBindErr, "MW_BIND_ERR"},
      {MLX5_CQE_SYNDROME_BAD_RESP_ERR, kLlMlx5SyndBadRespErr, "BAD_RESP_ERR"},
      {MLX5_CQE_SYNDROME_LOCAL_ACCESS_ERR, kLlMlx5SyndLocalAccessErr, "LOCAL_ACCESS_ERR"},
      {MLX5_CQE_SYNDROME_REMOTE_INVAL_REQ_ERR, kLlMlx5SyndRemoteInvalReqErr, "REMOTE_INVAL_REQ_ERR"},
      {MLX5_CQE_SYNDROME_REMOTE_ACCESS_ERR, kLlMlx5SyndRemoteAccessErr, "REMOTE_ACCESS_ERR"},
      {MLX5_CQE_SYNDROME_REMOTE_OP_ERR, kLlMlx5SyndRemoteOpErr, "REMOTE_OP_ERR"},
      {MLX5_CQE_SYNDROME_TRANSPORT_RETRY_EXC_ERR, kLlMlx5SyndTransportRetryExcErr, "TRANSPORT_RETRY_EXC_ERR"},
      {MLX5_CQE_SYNDROME_RNR_RETRY_EXC_ERR, kLlMlx5SyndRnrRetryExcErr, "RNR_RETRY_EXC_ERR"},
      {MLX5_CQE_SYNDROME_REMOTE_ABORTED_ERR, kLlMlx5SyndRemoteAbortedErr, "REMOTE_ABORTED_ERR"},
  };
  for (const Name& n : names) {
    EXPECT_EQ(static_cast<int>(n.ll), static_cast<int>(n.dv));
    EXPECT_EQ(std::string(llMlx5SyndromeName(n.ll)), std::string(n.name));
  }
  EXPECT_EQ(std::string(llMlx5SyndromeName(0x00)), std::string("UNKNOWN_SYNDROME"));
  EXPECT_EQ(std::string(llMlx5SyndromeName(0x93)), std::string("UNKNOWN_SYNDROME"));
}

LL_TEST_MAIN()
