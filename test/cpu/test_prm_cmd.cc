// The DevX command layouts (transport/ibgda/prm_cmd.h), checked three ways: the bit accessor against an
// independent bit-by-bit reference and hand-written bytes; each encoder against golden bytes written out by
// hand from the PRM bit offsets (a sparse list of the non-zero bytes; every other byte must be zero, so the
// whole buffer is compared); and round trips (build, then read every field back).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "harness.h"
#include "transport/ibgda/prm_cmd.h"

namespace {

// ---- Reference: one bit at a time, PRM numbering (bit 0 = most significant bit of byte 0) ----

void refSetBit(uint8_t* buf, uint32_t bit, int v) {
  uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
  buf[bit / 8] = static_cast<uint8_t>(v ? (buf[bit / 8] | m) : (buf[bit / 8] & ~m));
}

// The field's first bit is its value's most significant bit.
void refSet(uint8_t* buf, LlPrmField f, uint64_t v) {
  for (uint32_t i = 0; i < f.bitWidth; ++i) refSetBit(buf, f.bitOffset + i, (v >> (f.bitWidth - 1 - i)) & 1);
}

uint64_t mask(uint32_t width) { return width >= 64 ? ~0ull : (1ull << width) - 1; }

// A random value of the given width (1..32).
uint32_t bits(std::mt19937& rng, uint32_t width) { return static_cast<uint32_t>(rng() & mask(width)); }

// ---- Golden buffers: size bytes of zero except the listed ones ----

struct At {
  size_t byte;
  uint8_t value;
};

std::vector<uint8_t> golden(size_t size, std::initializer_list<At> nonZero) {
  std::vector<uint8_t> g(size, 0);
  for (const At& a : nonZero) g.at(a.byte) = a.value;
  return g;
}

void expectBytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, const char* what) {
  EXPECT_MSG(got.size() == want.size(), "%s: %zu bytes, expected %zu", what, got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_MSG(got[i] == want[i], "%s: byte %zu is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
}

// Sub-structure placement, as the encoders use it.
LlPrmField cqc(LlPrmField f) { return llPrmIn(kLlPrmCreateCqInCqContext, f); }
LlPrmField createQpc(LlPrmField f) { return llPrmIn(kLlPrmCreateQpInQpc, f); }
LlPrmField modifyQpc(LlPrmField f) { return llPrmIn(kLlPrmModifyQpInQpc, f); }
LlPrmField modifyAds(LlPrmField f) { return modifyQpc(llPrmIn(kLlPrmQpcPrimaryAddressPath, f)); }

void expectField(const std::vector<uint8_t>& buf, LlPrmField f, uint64_t want) {
  uint64_t got = llPrmGet(buf.data(), f);
  EXPECT_MSG(got == want, "%s at bit 0x%x: 0x%llx, expected 0x%llx", f.name, f.bitOffset,
             static_cast<unsigned long long>(got), static_cast<unsigned long long>(want));
}

// ---- Parameter sets used by the goldens (the values the byte lists were worked out from) ----

LlPrmCreateCqParams cqParams() {
  LlPrmCreateCqParams p{};
  p.logCqSize = 10;
  p.uarPage = 0x012345;
  p.eqn = 0x9a;
  p.cqUmemId = 0x11223344;
  p.cqUmemOffset = 0xa1a2a3a4a5a6a7a8ull;
  p.dbrUmemId = 0x55667788;
  p.dbrUmemOffset = 0xb1b2b3b4b5b6b7b8ull;
  p.overrunIgnore = true;
  return p;
}

LlPrmCreateQpParams qpParams() {
  LlPrmCreateQpParams p{};
  p.pd = 0xabcdef;
  p.uarPage = 0x054321;
  p.logSqSize = 7;
  p.cqnSnd = 0x0a0b0c;
  p.cqnRcv = 0x0d0e0f;
  p.wqUmemId = 0x01020304;
  p.wqUmemOffset = 0xc1c2c3c4c5c6c7c8ull;
  p.dbrUmemId = 0x05060708;
  p.dbrUmemOffset = 0xd1d2d3d4d5d6d7d8ull;
  return p;
}

LlPrmRst2initParams rst2initParams() {
  LlPrmRst2initParams p{};
  p.qpn = 0x123456;
  p.pd = 0x3c3c3c;
  p.vhcaPortNum = 1;
  p.remoteRead = true;
  p.remoteWrite = true;
  p.remoteAtomic = true;
  p.atomicMode = kLlPrmQpcAtomicModeUpTo8B;
  return p;
}

LlPrmInit2rtrParams init2rtrParams() {
  LlPrmInit2rtrParams p{};
  p.qpn = 0x0a0b0c;
  p.mtu = 5;
  p.logMsgMax = 30;
  p.remoteQpn = 0x654321;
  p.nextRcvPsn = 0xabcdef;
  p.logRraMax = 4;
  p.minRnrNak = 12;
  p.path.grh = true;
  p.path.rlid = 0x1234;
  for (int i = 0; i < 16; ++i) p.path.rgid[i] = static_cast<uint8_t>(0x20 + i);
  p.path.srcAddrIndex = 3;
  p.path.hopLimit = 64;
  p.path.tclass = 0x68;
  const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
  std::memcpy(p.path.rmac, mac, 6);
  p.path.forceLoopback = true;
  p.path.vhcaPortNum = 1;
  return p;
}

LlPrmRtr2rtsParams rtr2rtsParams() {
  LlPrmRtr2rtsParams p{};
  p.qpn = 0x0c0d0e;
  p.nextSendPsn = 0x13579b;
  p.logSraMax = 3;
  p.retryCount = 7;
  p.rnrRetry = 7;
  p.ackTimeout = 14;
  return p;
}

}  // namespace

// ---- The bit accessor ----

LL_TEST(bit_numbering_msb_first) {
  for (uint32_t bit = 0; bit < 64; ++bit) {
    uint8_t z[8] = {}, o[8];
    std::memset(o, 0xff, sizeof(o));
    llPrmSet(z, {bit, 1, "b"}, 1);
    llPrmSet(o, {bit, 1, "b"}, 0);
    for (uint32_t i = 0; i < 8; ++i) {
      uint8_t want = i == bit / 8 ? static_cast<uint8_t>(0x80 >> (bit % 8)) : 0;
      EXPECT_MSG(z[i] == want, "bit %u: byte %u is 0x%02x, expected 0x%02x", bit, i, z[i], want);
      EXPECT_MSG(o[i] == static_cast<uint8_t>(~want), "bit %u cleared: byte %u is 0x%02x", bit, i, o[i]);
    }
    EXPECT_EQ(llPrmGet(z, {bit, 1, "b"}), 1u);
    EXPECT_EQ(llPrmGet(o, {bit, 1, "b"}), 0u);
  }
}

// Hand-worked: an 8-bit field at bit 0x1c has its high nibble in byte 3's low nibble and its low nibble in
// byte 4's high nibble; a 24-bit field at 0x48 is bytes 9..11 (the PRM's qpn/cqn placement).
LL_TEST(field_golden_crossing_dword) {
  std::vector<uint8_t> b(16, 0);
  llPrmSet(b.data(), {0x1c, 8, "x"}, 0xab);
  llPrmSet(b.data(), {0x48, 24, "qpn"}, 0x123456);
  expectBytes(b, golden(16, {{3, 0x0a}, {4, 0xb0}, {9, 0x12}, {10, 0x34}, {11, 0x56}}), "crossing");
  EXPECT_EQ(llPrmGet(b.data(), {0x1c, 8, "x"}), 0xabu);
  EXPECT_EQ(llPrmGet(b.data(), {0x48, 24, "qpn"}), 0x123456u);
}

// Hand-worked: a 64-bit field at bit 4 spans three dwords, shifted by one nibble.
LL_TEST(field64_golden_unaligned) {
  std::vector<uint8_t> b(12, 0);
  llPrmSet(b.data(), {4, 64, "x"}, 0x0123456789abcdefull);
  expectBytes(
      b, golden(12, {{1, 0x12}, {2, 0x34}, {3, 0x56}, {4, 0x78}, {5, 0x9a}, {6, 0xbc}, {7, 0xde}, {8, 0xf0}}),
      "field64");
  EXPECT_EQ(llPrmGet(b.data(), {4, 64, "x"}), 0x0123456789abcdefull);
  std::vector<uint8_t> a(12, 0);
  llPrmSet(a.data(), {0x20, 64, "dbr_addr"}, 0x0102030405060708ull);  // dword-aligned: plain big-endian
  expectBytes(a, golden(12, {{4, 1}, {5, 2}, {6, 3}, {7, 4}, {8, 5}, {9, 6}, {10, 7}, {11, 8}}), "aligned64");
}

// Every width 1..32 and 64 at offsets that start anywhere in a byte and cross byte and dword boundaries:
// the accessor matches the bit-by-bit reference, reads back, and leaves the neighbouring bits as they were.
LL_TEST(widths_round_trip_neighbours_untouched) {
  std::mt19937_64 rng(7);
  std::vector<uint32_t> widths;
  for (uint32_t w = 1; w <= 32; ++w) widths.push_back(w);
  widths.push_back(64);
  for (uint32_t w : widths) {
    for (uint32_t off = 0; off < 70; ++off) {
      LlPrmField f{off, w, "f"};
      uint8_t got[20], want[20];
      for (uint8_t& x : got) x = static_cast<uint8_t>(rng());
      std::memcpy(want, got, sizeof(got));
      uint64_t v = rng() & mask(w);
      llPrmSet(got, f, v);
      refSet(want, f, v);
      EXPECT_MSG(std::memcmp(got, want, sizeof(got)) == 0, "width %u offset %u differs from the reference", w,
                 off);
      EXPECT_MSG(llPrmGet(got, f) == v, "width %u offset %u reads back wrong", w, off);
    }
  }
}

// Bits above the width are not written; llPrmFits says whether a value would be truncated.
LL_TEST(wide_values_masked_and_fits) {
  uint8_t b[4] = {0xff, 0xff, 0xff, 0xff};
  llPrmSet(b, {8, 4, "x"}, 0x1f0);  // low 4 bits are 0
  EXPECT_EQ(b[0], 0xff);
  EXPECT_EQ(b[1], 0x0f);
  EXPECT_EQ(b[2], 0xff);
  EXPECT(llPrmFits({0, 4, "x"}, 15));
  EXPECT(!llPrmFits({0, 4, "x"}, 16));
  EXPECT(llPrmFits({0, 24, "qpn"}, 0xffffff));
  EXPECT(!llPrmFits({0, 24, "qpn"}, 0x1000000));
  EXPECT(llPrmFits({0, 64, "addr"}, ~0ull));
  LlPrmField nested = llPrmIn(0xc0, llPrmIn(0xc0, kLlPrmAdsVhcaPortNum));
  EXPECT_EQ(nested.bitOffset, 0xc0u + 0xc0u + 0x128u);
  EXPECT_EQ(nested.bitWidth, 8u);
}

// ---- Sizes, opcodes and structure placement ----

LL_TEST(sizes_opcodes_offsets) {
  EXPECT_EQ(kLlPrmCreateCqInBytes, size_t{272});
  EXPECT_EQ(kLlPrmCreateQpInBytes, size_t{272});
  EXPECT_EQ(kLlPrmModifyQpInBytes, size_t{272});
  EXPECT_EQ(kLlPrmCreateCqOutBytes, size_t{16});
  EXPECT_EQ(kLlPrmCreateQpOutBytes, size_t{16});
  EXPECT_EQ(kLlPrmModifyQpOutBytes, size_t{16});
  EXPECT_EQ(kLlPrmQueryHcaCapInBytes, size_t{16});
  EXPECT_EQ(kLlPrmQueryHcaCapOutBytes, size_t{4112});
  // The contexts fill their commands: the field after each context starts where the context ends.
  EXPECT_EQ(kLlPrmCreateCqInCqContext + kLlPrmCqcBits, kLlPrmCreateCqInCqUmemOffset.bitOffset);
  EXPECT_EQ(kLlPrmCreateQpInQpc + kLlPrmQpcBits, kLlPrmCreateQpInWqUmemOffset.bitOffset);
  EXPECT_EQ(kLlPrmModifyQpInQpc + kLlPrmQpcBits + 0x80, uint32_t{kLlPrmModifyQpInBytes * 8});
  // The primary address path is followed by the secondary one, then log_ack_req_freq at 0x380.
  EXPECT_EQ(kLlPrmQpcPrimaryAddressPath + 2 * kLlPrmAdsBits, 0x380u);
  // Every field lies inside its structure.
  for (LlPrmField f : {kLlPrmCqcDbrUmemValid, kLlPrmCqcCqeSz, kLlPrmCqcOi, kLlPrmCqcDbrUmemId,
                       kLlPrmCqcLogCqSize, kLlPrmCqcUarPage, kLlPrmCqcCEqnOrApuElement, kLlPrmCqcDbrAddr})
    EXPECT_MSG(f.bitOffset + f.bitWidth <= kLlPrmCqcBits, "cqc.%s", f.name);
  for (LlPrmField f : {kLlPrmAdsFl, kLlPrmAdsGrh, kLlPrmAdsRlid, kLlPrmAdsAckTimeout, kLlPrmAdsSrcAddrIndex,
                       kLlPrmAdsHopLimit, kLlPrmAdsTclass, kLlPrmAdsRgidRip, kLlPrmAdsVhcaPortNum,
                       kLlPrmAdsRmac47_32, kLlPrmAdsRmac31_0})
    EXPECT_MSG(f.bitOffset + f.bitWidth <= kLlPrmAdsBits, "ads.%s", f.name);
  EXPECT(kLlPrmQpcDbrUmemId.bitOffset + kLlPrmQpcDbrUmemId.bitWidth == kLlPrmQpcBits);
  EXPECT_EQ(kLlPrmOpQueryHcaCap, 0x100);
  EXPECT_EQ(kLlPrmOpCreateCq, 0x400);
  EXPECT_EQ(kLlPrmOpCreateQp, 0x500);
  EXPECT_EQ(kLlPrmOpRst2initQp, 0x502);
  EXPECT_EQ(kLlPrmOpInit2rtrQp, 0x503);
  EXPECT_EQ(kLlPrmOpRtr2rtsQp, 0x504);
  EXPECT_EQ(kLlPrmHcaCapOpModGeneralCur, 0x1);
  EXPECT_EQ(kLlPrmHcaCapOpModAtomicCur, 0x7);
}

// ---- CREATE_CQ ----

// cqc at byte 16: dbr_umem_valid (cqc bit 6) -> byte 16 0x02; oi (bit 0xe) -> byte 17 0x02; dbr_umem_id
// (0x20) -> 20..23; log_cq_size (0x63, 5 bits) -> byte 28 low 5 bits; uar_page (0x68) -> 29..31;
// c_eqn_or_apu_element (0xa0) -> 36..39; dbr_addr (0x1c0) -> 72..79. Then cq_umem_offset (0x280) -> 80..87,
// cq_umem_id (0x2c0) -> 88..91, cq_umem_valid (0x2e0) -> byte 92 0x80. Opcode 0x0400 -> bytes 0..1.
LL_TEST(create_cq_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildCreateCq(cqParams(), &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x04},  {16, 0x02}, {17, 0x02}, {20, 0x55}, {21, 0x66}, {22, 0x77}, {23, 0x88},
                           {28, 0x0a}, {29, 0x01}, {30, 0x23}, {31, 0x45}, {39, 0x9a}, {72, 0xb1}, {73, 0xb2},
                           {74, 0xb3}, {75, 0xb4}, {76, 0xb5}, {77, 0xb6}, {78, 0xb7}, {79, 0xb8}, {80, 0xa1},
                           {81, 0xa2}, {82, 0xa3}, {83, 0xa4}, {84, 0xa5}, {85, 0xa6}, {86, 0xa7}, {87, 0xa8},
                           {88, 0x11}, {89, 0x22}, {90, 0x33}, {91, 0x44}, {92, 0x80}}),
              "create_cq_in");
}

LL_TEST(create_cq_round_trip) {
  std::mt19937 rng(11);
  for (int i = 0; i < 100; ++i) {
    LlPrmCreateCqParams p{};
    p.logCqSize = rng() % 32;
    p.uarPage = rng() & 0xffffff;
    p.eqn = rng();
    p.cqUmemId = rng();
    p.cqUmemOffset = uint64_t{rng()} << 32 | rng();
    p.dbrUmemId = rng();
    p.dbrUmemOffset = uint64_t{rng()} << 32 | rng();
    p.overrunIgnore = rng() & 1;
    std::vector<uint8_t> in;
    size_t outSize = 0;
    EXPECT(llPrmBuildCreateCq(p, &in, &outSize) == nullptr);
    expectField(in, kLlPrmCmdInOpcode, kLlPrmOpCreateCq);
    expectField(in, kLlPrmCmdInOpMod, 0);
    expectField(in, cqc(kLlPrmCqcDbrUmemValid), 1);
    expectField(in, cqc(kLlPrmCqcCqeSz), 0);
    expectField(in, cqc(kLlPrmCqcOi), p.overrunIgnore);
    expectField(in, cqc(kLlPrmCqcDbrUmemId), p.dbrUmemId);
    expectField(in, cqc(kLlPrmCqcLogCqSize), p.logCqSize);
    expectField(in, cqc(kLlPrmCqcUarPage), p.uarPage);
    expectField(in, cqc(kLlPrmCqcCEqnOrApuElement), p.eqn);
    expectField(in, cqc(kLlPrmCqcDbrAddr), p.dbrUmemOffset);
    expectField(in, kLlPrmCreateCqInCqUmemOffset, p.cqUmemOffset);
    expectField(in, kLlPrmCreateCqInCqUmemId, p.cqUmemId);
    expectField(in, kLlPrmCreateCqInCqUmemValid, 1);
  }
}

// ---- CREATE_QP ----

// qpc at byte 24: pm_state 3 (qpc 0x13, 2 bits) -> byte 26 0x18; pd (0x28) -> 29..31; log_sq_size 7
// (0x51, 4 bits) -> byte 34 0x38; uar_page (0x68) -> 37..39; cqn_snd (0x3e8) -> 149..151; cqn_rcv (0x4e8) ->
// 181..183; dbr_addr (0x500) -> 184..191; rq_type 3 (0x565, 3 bits) -> byte 196 0x03; dbr_umem_valid (0x683)
// -> byte 232 0x10; dbr_umem_id (0x720) -> 252..255. Then wq_umem_offset (0x800) -> 256..263, wq_umem_id
// (0x840) -> 264..267, wq_umem_valid (0x860) -> byte 268 0x80. st RC is 0.
LL_TEST(create_qp_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildCreateQp(qpParams(), &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x05},   {26, 0x18},  {29, 0xab},  {30, 0xcd},  {31, 0xef},  {34, 0x38},
                           {37, 0x05},  {38, 0x43},  {39, 0x21},  {149, 0x0a}, {150, 0x0b}, {151, 0x0c},
                           {181, 0x0d}, {182, 0x0e}, {183, 0x0f}, {184, 0xd1}, {185, 0xd2}, {186, 0xd3},
                           {187, 0xd4}, {188, 0xd5}, {189, 0xd6}, {190, 0xd7}, {191, 0xd8}, {196, 0x03},
                           {232, 0x10}, {252, 0x05}, {253, 0x06}, {254, 0x07}, {255, 0x08}, {256, 0xc1},
                           {257, 0xc2}, {258, 0xc3}, {259, 0xc4}, {260, 0xc5}, {261, 0xc6}, {262, 0xc7},
                           {263, 0xc8}, {264, 0x01}, {265, 0x02}, {266, 0x03}, {267, 0x04}, {268, 0x80}}),
              "create_qp_in");
}

LL_TEST(create_qp_round_trip) {
  std::mt19937 rng(12);
  for (int i = 0; i < 100; ++i) {
    LlPrmCreateQpParams p{};
    p.pd = rng() & 0xffffff;
    p.uarPage = rng() & 0xffffff;
    p.logSqSize = rng() % 16;
    p.cqnSnd = rng() & 0xffffff;
    p.cqnRcv = rng() & 0xffffff;
    p.wqUmemId = rng();
    p.wqUmemOffset = uint64_t{rng()} << 32 | rng();
    p.dbrUmemId = rng();
    p.dbrUmemOffset = uint64_t{rng()} << 32 | rng();
    std::vector<uint8_t> in;
    size_t outSize = 0;
    EXPECT(llPrmBuildCreateQp(p, &in, &outSize) == nullptr);
    expectField(in, kLlPrmCmdInOpcode, kLlPrmOpCreateQp);
    expectField(in, createQpc(kLlPrmQpcSt), kLlPrmQpcStRc);
    expectField(in, createQpc(kLlPrmQpcPmState), kLlPrmQpcPmStateMigrated);
    expectField(in, createQpc(kLlPrmQpcPd), p.pd);
    expectField(in, createQpc(kLlPrmQpcLogRqSize), 0);
    expectField(in, createQpc(kLlPrmQpcNoSq), 0);
    expectField(in, createQpc(kLlPrmQpcLogSqSize), p.logSqSize);
    expectField(in, createQpc(kLlPrmQpcUarPage), p.uarPage);
    expectField(in, createQpc(kLlPrmQpcCqnSnd), p.cqnSnd);
    expectField(in, createQpc(kLlPrmQpcCqnRcv), p.cqnRcv);
    expectField(in, createQpc(kLlPrmQpcDbrAddr), p.dbrUmemOffset);
    expectField(in, createQpc(kLlPrmQpcRqType), kLlPrmQpcRqTypeZeroSizeRq);
    expectField(in, createQpc(kLlPrmQpcDbrUmemValid), 1);
    expectField(in, createQpc(kLlPrmQpcDbrUmemId), p.dbrUmemId);
    expectField(in, kLlPrmCreateQpInWqUmemOffset, p.wqUmemOffset);
    expectField(in, kLlPrmCreateQpInWqUmemId, p.wqUmemId);
    expectField(in, kLlPrmCreateQpInWqUmemValid, 1);
  }
}

// ---- QP transitions ----

// qpn (0x48) -> 9..11; qpc at byte 24: pd -> 29..31; the primary path at qpc 0xc0 (byte 48), its
// vhca_port_num (ads 0x128) -> byte 85; atomic_mode 3 (qpc 0x48c, 4 bits) -> byte 169 0x03; rre/rwe/rae
// (qpc 0x490..0x492) -> byte 170 0xe0. Opcode 0x0502.
LL_TEST(rst2init_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildRst2init(rst2initParams(), &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x05}, {1, 0x02}, {9, 0x12}, {10, 0x34}, {11, 0x56}, {29, 0x3c}, {30, 0x3c},
                           {31, 0x3c}, {85, 0x01}, {169, 0x03}, {170, 0xe0}}),
              "rst2init_qp_in");
}

// qpn -> 9..11; mtu 5 and log_msg_max 30 share byte 32 (0xa0 | 0x1e); remote_qpn (qpc 0xa8) -> 45..47. The
// path at byte 48: fl -> byte 48 0x80; grh (ads 0x28) -> byte 53 0x80; rlid (0x30) -> 54..55; src_addr_index
// (0x48) -> 57; hop_limit (0x58) -> 59; tclass 0x68 (ads 0x64, crosses a byte) -> byte 60 0x06, byte 61 0x80;
// rgid_rip (0x80) -> 64..79; vhca_port_num -> 85; rmac_47_32 (0x130) -> 86..87; rmac_31_0 (0x140) -> 88..91.
// log_rra_max 4 (qpc 0x488, 3 bits) -> byte 169 0x80; min_rnr_nak 12 (0x4a3, 5 bits) -> byte 172 0x0c;
// next_rcv_psn (0x4a8) -> 173..175. Opcode 0x0503.
LL_TEST(init2rtr_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildInit2rtr(init2rtrParams(), &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x05},   {1, 0x03},   {9, 0x0a},   {10, 0x0b},  {11, 0x0c},  {32, 0xbe},
                           {45, 0x65},  {46, 0x43},  {47, 0x21},  {48, 0x80},  {53, 0x80},  {54, 0x12},
                           {55, 0x34},  {57, 0x03},  {59, 0x40},  {60, 0x06},  {61, 0x80},  {64, 0x20},
                           {65, 0x21},  {66, 0x22},  {67, 0x23},  {68, 0x24},  {69, 0x25},  {70, 0x26},
                           {71, 0x27},  {72, 0x28},  {73, 0x29},  {74, 0x2a},  {75, 0x2b},  {76, 0x2c},
                           {77, 0x2d},  {78, 0x2e},  {79, 0x2f},  {85, 0x01},  {86, 0x02},  {87, 0x11},
                           {88, 0x22},  {89, 0x33},  {90, 0x44},  {91, 0x55},  {169, 0x80}, {172, 0x0c},
                           {173, 0xab}, {174, 0xcd}, {175, 0xef}}),
              "init2rtr_qp_in");
}

// A RoCE v2 path (the fields setup.cc fills on an Ethernet port), over the same QP fields as init2rtr_golden:
// grh -> byte 53 0x80; rlid 0; src_addr_index 3 -> byte 57; hop_limit 64 -> byte 59 0x40; tclass 0x6a (ads 0x64)
// -> byte 60 0x06, byte 61 0xa0; rgid_rip ::ffff:10.108.0.17 -> 74..79; dscp 26 (ads 0x10a, 6 bits: the low six
// bits of byte 81, under ecn) -> byte 81 0x1a; udp_sport 0xc123 (ads 0x110) -> 82..83; vhca_port_num -> 85; rmac
// 02:6c:00:00:00:11 -> 86..91. eth_prio and sl (byte 84) stay zero.
LL_TEST(init2rtr_roce_golden) {
  for (LlPrmField f : {kLlPrmAdsDscp, kLlPrmAdsUdpSport})
    EXPECT_MSG(f.bitOffset + f.bitWidth <= kLlPrmAdsBits, "ads.%s", f.name);
  LlPrmInit2rtrParams p = init2rtrParams();
  LlPrmAddressPath& a = p.path;
  a = LlPrmAddressPath{};
  a.grh = true;
  const uint8_t gid[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 108, 0, 0x11};
  std::memcpy(a.rgid, gid, 16);
  a.srcAddrIndex = 3;
  a.hopLimit = 64;
  a.tclass = 0x6a;
  a.dscp = 0x6a >> 2;
  a.udpSport = 0xc123;
  const uint8_t mac[6] = {0x02, 0x6c, 0x00, 0x00, 0x00, 0x11};
  std::memcpy(a.rmac, mac, 6);
  a.vhcaPortNum = 1;
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildInit2rtr(p, &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x05},   {1, 0x03},   {9, 0x0a},   {10, 0x0b},  {11, 0x0c},  {32, 0xbe},
                           {45, 0x65},  {46, 0x43},  {47, 0x21},  {53, 0x80},  {57, 0x03},  {59, 0x40},
                           {60, 0x06},  {61, 0xa0},  {74, 0xff},  {75, 0xff},  {76, 0x0a},  {77, 0x6c},
                           {79, 0x11},  {81, 0x1a},  {82, 0xc1},  {83, 0x23},  {85, 0x01},  {86, 0x02},
                           {87, 0x6c},  {91, 0x11},  {169, 0x80}, {172, 0x0c}, {173, 0xab}, {174, 0xcd},
                           {175, 0xef}}),
              "init2rtr_qp_in roce");
  // Full-width values read back and leave their neighbours (ecn above dscp, eth_prio after udp_sport) alone.
  a.dscp = 0x3f;
  a.udpSport = 0xffff;
  EXPECT(llPrmBuildInit2rtr(p, &in, &outSize) == nullptr);
  expectField(in, modifyAds(kLlPrmAdsDscp), 0x3f);
  expectField(in, modifyAds(kLlPrmAdsUdpSport), 0xffff);
  EXPECT_EQ(int{in[81]}, 0x3f);
  EXPECT_EQ(int{in[84]}, 0);
  a.dscp = 64;
  EXPECT_EQ(std::string(llPrmBuildInit2rtr(p, &in, &outSize)), std::string("dscp"));
  a.dscp = 0;
  a.udpSport = 0x10000;
  EXPECT_EQ(std::string(llPrmBuildInit2rtr(p, &in, &outSize)), std::string("udp_sport"));
}

// qpn -> 9..11; ack_timeout 14 (ads 0x40, 5 bits) -> byte 56 0x70; log_sra_max 3 (qpc 0x388) and
// retry_count 7 (0x38d) share byte 137 (0x60 | 0x07); rnr_retry 7 (0x390) -> byte 138 0xe0; next_send_psn
// (0x3c8) -> 145..147. Opcode 0x0504.
LL_TEST(rtr2rts_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  EXPECT(llPrmBuildRtr2rts(rtr2rtsParams(), &in, &outSize) == nullptr);
  EXPECT_EQ(outSize, size_t{16});
  expectBytes(in,
              golden(272, {{0, 0x05}, {1, 0x04}, {9, 0x0c}, {10, 0x0d}, {11, 0x0e}, {56, 0x70}, {137, 0x67},
                           {138, 0xe0}, {145, 0x13}, {146, 0x57}, {147, 0x9b}}),
              "rtr2rts_qp_in");
}

LL_TEST(modify_qp_round_trip) {
  std::mt19937 rng(13);
  for (int i = 0; i < 100; ++i) {
    std::vector<uint8_t> in;
    size_t outSize = 0;
    LlPrmRst2initParams a{bits(rng, 24), bits(rng, 24), bits(rng, 8), bits(rng, 1) != 0, bits(rng, 1) != 0,
                          bits(rng, 1) != 0, bits(rng, 4)};
    EXPECT(llPrmBuildRst2init(a, &in, &outSize) == nullptr);
    expectField(in, kLlPrmCmdInOpcode, kLlPrmOpRst2initQp);
    expectField(in, kLlPrmModifyQpInQpn, a.qpn);
    expectField(in, modifyQpc(kLlPrmQpcPd), a.pd);
    expectField(in, modifyAds(kLlPrmAdsVhcaPortNum), a.vhcaPortNum);
    expectField(in, modifyQpc(kLlPrmQpcRre), a.remoteRead);
    expectField(in, modifyQpc(kLlPrmQpcRwe), a.remoteWrite);
    expectField(in, modifyQpc(kLlPrmQpcRae), a.remoteAtomic);
    expectField(in, modifyQpc(kLlPrmQpcAtomicMode), a.atomicMode);

    LlPrmInit2rtrParams b{};
    b.qpn = rng() & 0xffffff;
    b.mtu = 1 + rng() % 5;
    b.logMsgMax = rng() % 32;
    b.remoteQpn = rng() & 0xffffff;
    b.nextRcvPsn = rng() & 0xffffff;
    b.logRraMax = rng() % 8;
    b.minRnrNak = rng() % 32;
    b.path.grh = rng() & 1;
    b.path.rlid = rng() & 0xffff;
    for (uint8_t& g : b.path.rgid) g = static_cast<uint8_t>(rng());
    b.path.srcAddrIndex = rng() & 0xff;
    b.path.hopLimit = rng() & 0xff;
    b.path.tclass = rng() & 0xff;
    for (uint8_t& m : b.path.rmac) m = static_cast<uint8_t>(rng());
    b.path.forceLoopback = rng() & 1;
    b.path.vhcaPortNum = rng() & 0xff;
    EXPECT(llPrmBuildInit2rtr(b, &in, &outSize) == nullptr);
    expectField(in, kLlPrmCmdInOpcode, kLlPrmOpInit2rtrQp);
    expectField(in, kLlPrmModifyQpInQpn, b.qpn);
    expectField(in, modifyQpc(kLlPrmQpcMtu), b.mtu);
    expectField(in, modifyQpc(kLlPrmQpcLogMsgMax), b.logMsgMax);
    expectField(in, modifyQpc(kLlPrmQpcRemoteQpn), b.remoteQpn);
    expectField(in, modifyQpc(kLlPrmQpcNextRcvPsn), b.nextRcvPsn);
    expectField(in, modifyQpc(kLlPrmQpcLogRraMax), b.logRraMax);
    expectField(in, modifyQpc(kLlPrmQpcMinRnrNak), b.minRnrNak);
    expectField(in, modifyAds(kLlPrmAdsFl), b.path.forceLoopback);
    expectField(in, modifyAds(kLlPrmAdsGrh), b.path.grh);
    expectField(in, modifyAds(kLlPrmAdsRlid), b.path.rlid);
    expectField(in, modifyAds(kLlPrmAdsSrcAddrIndex), b.path.srcAddrIndex);
    expectField(in, modifyAds(kLlPrmAdsHopLimit), b.path.hopLimit);
    expectField(in, modifyAds(kLlPrmAdsTclass), b.path.tclass);
    expectField(in, modifyAds(kLlPrmAdsVhcaPortNum), b.path.vhcaPortNum);
    LlPrmField rgid = modifyAds(kLlPrmAdsRgidRip);
    EXPECT(std::memcmp(in.data() + rgid.bitOffset / 8, b.path.rgid, 16) == 0);
    // The two rmac fields are adjacent: together they are the MAC's 6 bytes in wire order.
    LlPrmField rmac = modifyAds(kLlPrmAdsRmac47_32);
    EXPECT(std::memcmp(in.data() + rmac.bitOffset / 8, b.path.rmac, 6) == 0);

    LlPrmRtr2rtsParams c{bits(rng, 24), bits(rng, 24), bits(rng, 3),
                         bits(rng, 3),  bits(rng, 3),  bits(rng, 5)};
    EXPECT(llPrmBuildRtr2rts(c, &in, &outSize) == nullptr);
    expectField(in, kLlPrmCmdInOpcode, kLlPrmOpRtr2rtsQp);
    expectField(in, kLlPrmModifyQpInQpn, c.qpn);
    expectField(in, modifyQpc(kLlPrmQpcNextSendPsn), c.nextSendPsn);
    expectField(in, modifyQpc(kLlPrmQpcLogSraMax), c.logSraMax);
    expectField(in, modifyQpc(kLlPrmQpcRetryCount), c.retryCount);
    expectField(in, modifyQpc(kLlPrmQpcRnrRetry), c.rnrRetry);
    expectField(in, modifyAds(kLlPrmAdsAckTimeout), c.ackTimeout);
  }
}

// A value that does not fit its field is reported by name, not truncated into a different object.
LL_TEST(build_rejects_values_too_wide) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  LlPrmCreateQpParams qp = qpParams();
  qp.logSqSize = 16;
  EXPECT_EQ(std::string(llPrmBuildCreateQp(qp, &in, &outSize)), std::string("log_sq_size"));
  qp = qpParams();
  qp.cqnSnd = 0x1000000;
  EXPECT_EQ(std::string(llPrmBuildCreateQp(qp, &in, &outSize)), std::string("cqn_snd"));
  LlPrmCreateCqParams cq = cqParams();
  cq.logCqSize = 32;
  EXPECT_EQ(std::string(llPrmBuildCreateCq(cq, &in, &outSize)), std::string("log_cq_size"));
  LlPrmRtr2rtsParams rts = rtr2rtsParams();
  rts.retryCount = 8;
  EXPECT_EQ(std::string(llPrmBuildRtr2rts(rts, &in, &outSize)), std::string("retry_count"));
  LlPrmInit2rtrParams rtr = init2rtrParams();
  rtr.qpn = 0x1000000;
  rtr.mtu = 8;
  EXPECT_EQ(std::string(llPrmBuildInit2rtr(rtr, &in, &outSize)), std::string("qpn"));  // the first one
}

// ---- QUERY_HCA_CAP and the decoders ----

// opcode 0x0100 -> bytes 0..1, op_mod (0x30) -> bytes 6..7.
LL_TEST(query_hca_cap_golden) {
  std::vector<uint8_t> in;
  size_t outSize = 0;
  llPrmBuildQueryHcaCap(kLlPrmHcaCapOpModGeneralCur, &in, &outSize);
  expectBytes(in, golden(16, {{0, 0x01}, {7, 0x01}}), "query_hca_cap_in general");
  EXPECT_EQ(outSize, size_t{4112});
  llPrmBuildQueryHcaCap(kLlPrmHcaCapOpModAtomicCur, &in, &outSize);
  expectBytes(in, golden(16, {{0, 0x01}, {7, 0x07}}), "query_hca_cap_in atomic");
}

// Hand-made outputs; reserved bytes next to the fields are set so the decoders must mask them away.
LL_TEST(decode_status_cqn_qpn) {
  std::vector<uint8_t> out = golden(16, {{0, 0x03}, {1, 0xff}, {4, 0xde}, {5, 0xad}, {6, 0xbe}, {7, 0xef},
                                         {8, 0xff}, {9, 0x01}, {10, 0x23}, {11, 0x45}, {12, 0xff}});
  LlPrmCmdStatus s = llPrmDecodeStatus(out.data());
  EXPECT_EQ(int{s.status}, 0x03);
  EXPECT_EQ(s.syndrome, 0xdeadbeefu);
  EXPECT_EQ(llPrmDecodeCqn(out.data()), 0x012345u);
  EXPECT_EQ(llPrmDecodeQpn(out.data()), 0x012345u);
  LlPrmCmdStatus ok = llPrmDecodeStatus(golden(16, {}).data());
  EXPECT_EQ(int{ok.status}, int{kLlPrmStatusOk});
  EXPECT_EQ(ok.syndrome, 0u);
}

// The capability starts at byte 16. log_max_qp_sz (0x88) -> byte 33; log_max_qp (0x9b, 5 bits) -> byte 35
// low bits (0xe0 above it is prio_tag_required and reserved); log_max_cq_sz (0xc8) -> byte 41; log_max_cq
// (0xdb) -> byte 43; log_max_ra_req_qp (0x14a, 6 bits) -> byte 57; log_max_ra_res_qp (0x15a) -> byte 59;
// port_type (0x1b6, 2 bits) -> byte 70 low bits (byte 71 is num_ports); log_max_msg (0x1c3) -> byte 72;
// roce (0x21d) and atomic (0x21e) -> byte 83 0x04 | 0x02.
LL_TEST(decode_general_caps) {
  std::vector<uint8_t> out = golden(4112, {{33, 0x0f}, {35, 0xf2}, {41, 0x16}, {43, 0x18}, {57, 0x04},
                                           {59, 0x05}, {70, 0x01}, {71, 0x01}, {72, 0x1e}, {83, 0x06}});
  LlPrmGeneralCaps c = llPrmDecodeGeneralCaps(out.data());
  EXPECT_EQ(c.logMaxQpSz, 15u);
  EXPECT_EQ(c.logMaxQp, 18u);
  EXPECT_EQ(c.logMaxCqSz, 22u);
  EXPECT_EQ(c.logMaxCq, 24u);
  EXPECT_EQ(c.logMaxRaReqQp, 4u);
  EXPECT_EQ(c.logMaxRaResQp, 5u);
  EXPECT_EQ(c.portType, kLlPrmPortTypeEth);
  EXPECT_EQ(c.logMaxMsg, 30u);
  EXPECT(c.roce);
  EXPECT(c.atomic);
  out[70] = 0xfc;  // port_type IB; the bits before it set
  out[83] = 0xf9;  // roce and atomic clear; their neighbours set
  c = llPrmDecodeGeneralCaps(out.data());
  EXPECT_EQ(c.portType, kLlPrmPortTypeIb);
  EXPECT(!c.roce);
  EXPECT(!c.atomic);
}

// atomic_req_8B_endianness_mode (0x40, 2 bits) -> byte 24 top bits; atomic_operations (0x90) -> 34..35;
// atomic_size_qp (0xb0) -> 38..39.
LL_TEST(decode_atomic_caps) {
  std::vector<uint8_t> out = golden(4112, {{24, 0x40}, {35, 0x0a}, {39, 0x0c}});
  LlPrmAtomicCaps a = llPrmDecodeAtomicCaps(out.data());
  EXPECT_EQ(a.atomicReq8BEndiannessMode, 1u);
  EXPECT_EQ(a.atomicOperations, kLlPrmAtomicOpsFetchAdd | kLlPrmAtomicOpsMaskedFetchAdd);
  EXPECT_EQ(a.atomicSizeQp, 0x0cu);  // 4- and 8-byte operands
}

LL_TEST(status_names) {
  EXPECT_EQ(std::string(llPrmStatusName(0x00)), std::string("ok"));
  EXPECT_EQ(std::string(llPrmStatusName(0x03)), std::string("bad parameter"));
  EXPECT_EQ(std::string(llPrmStatusName(0x10)), std::string("bad QP state"));
  EXPECT_EQ(std::string(llPrmStatusName(0x50)), std::string("bad input length"));
  EXPECT_EQ(std::string(llPrmStatusName(0x77)), std::string("unknown status"));
}

LL_TEST_MAIN()
