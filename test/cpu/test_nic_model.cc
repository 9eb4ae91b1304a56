// The software mlx5 device (transport/ibgda/model) driven the way a GPU will drive it: WQEs are written
// byte by byte into the send ring by a small writer that lives only in this file (big-endian fields at
// their PRM offsets, restated here on purpose so that the model's decoder and this writer do not share
// a table), the doorbell record is updated, and CQEs are read back from the CQ ring by their raw bytes.
// Two model devices ("ranks") in one process are linked by a LoopbackWire.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "harness.h"
#include "nic_test_util.h"
#include "transport/ibgda/model/nic_model.h"

using namespace llnic;
using namespace llnictest;

namespace {

// ---- one rank: a model device with one CQ and one RC QP --------------------------------------------

struct Rank {
  Rank(LoopbackWire& wire, PeerId id, uint32_t logSq, uint32_t logCq, bool ignoreOverrun)
      : nic(mem, wire), sq(64u << logSq), sqDbrec(64), cq(64u << logCq), cqDbrec(64), logSq(logSq),
        logCq(logCq) {
    // Software marks every CQE invalid before handing the ring over (rdma-core does the same).
    for (size_t i = 0; i < (1u << logCq); i++) cq.p()[i * 64 + kCqeOpOwn] = kCqeInvalid << 4;
    CqConfig c;
    c.ringAddr = cq.addr();
    c.logSize = logCq;
    c.dbrecAddr = cqDbrec.addr();
    c.ignoreOverrun = ignoreOverrun;
    EXPECT(nic.createCq(c, &cqn) == Status::kOk);
    QpConfig q;
    q.sqAddr = sq.addr();
    q.logSqBbs = logSq;
    q.dbrecAddr = sqDbrec.addr();
    q.cqn = cqn;
    EXPECT(nic.createQp(q, &qpn) == Status::kOk);
    wire.attach(id, &nic);
  }

  MemoryKeys reg(const Block& b, uint32_t access) {
    MemoryKeys k;
    EXPECT(nic.pd().registerRegion(b.addr(), b.size(), access, &k) == Status::kOk);
    return k;
  }
  QpState state() { return nic.qp(qpn)->state(); }

  HostMemory mem;
  NicModel nic;
  Block sq, sqDbrec, cq, cqDbrec;
  uint32_t logSq, logCq;
  uint32_t cqn = 0, qpn = 0;
  uint16_t producer = 0;     // software's SQ producer counter (WQEBBs)
  uint32_t cqConsumer = 0;   // software's CQ consumer index
};

constexpr uint32_t kRw = kAccessLocalWrite | kAccessRemoteWrite;
constexpr uint32_t kUnknownKey = 0x00fedc5a;  // registered nowhere
constexpr uint32_t kAll = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead | kAccessRemoteAtomic;

// Walks the QP up to `upTo` (RST -> INIT -> RTR -> RTS), connected to `peer`'s QP `remoteQpn`.
void bringUp(Rank& r, PeerId peer, uint32_t remoteQpn, QpState upTo = QpState::kRts) {
  RemoteQp remote{peer, remoteQpn};
  const QpState path[] = {QpState::kInit, QpState::kRtr, QpState::kRts};
  for (QpState s : path) {
    EXPECT(r.nic.modifyQp(r.qpn, s, &remote) == Status::kOk);
    if (s == upTo) return;
  }
}

// Ranks 0 (a, the requester in most cases) and 1 (b), connected RC QPs.
struct Pair {
  explicit Pair(uint32_t logSq = 6, uint32_t logCq = 6, QpState aUpTo = QpState::kRts,
                QpState bUpTo = QpState::kRts, bool ignoreOverrun = false)
      : a(wire, 0, logSq, logCq, ignoreOverrun), b(wire, 1, logSq, logCq, ignoreOverrun) {
    bringUp(a, 1, b.qpn, aUpTo);
    bringUp(b, 0, a.qpn, bUpTo);
  }
  LoopbackWire wire;
  Rank a, b;
};

// After an error: back to RST (which clears the device's counters), then up again.
void reconnect(Rank& r, PeerId peer, uint32_t remoteQpn) {
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kReset) == Status::kOk);
  r.producer = 0;
  bringUp(r, peer, remoteQpn);
}

// ---- the WQE writer --------------------------------------------------------------------------------

// Builds one WQE: the 16-byte ctrl segment, then segments appended in 16-byte units; done() sets DS.
class WqeWriter {
 public:
  WqeWriter(const Rank& r, uint8_t opcode, uint8_t fmCeSe = 0, uint8_t opmod = 0) : b_(16, 0) {
    // opmod_idx_opcode = opmod[31:24] | wqe_index[23:8] | opcode[7:0]; qpn_ds = qpn[31:8] | ds[7:0].
    putBe32(&b_[0], (uint32_t)opmod << 24 | (uint32_t)r.producer << 8 | opcode);
    putBe32(&b_[4], r.qpn << 8);
    b_[11] = fmCeSe;
  }
  WqeWriter& raddr(uint64_t addr, uint32_t rkey) {  // be64 raddr, be32 rkey, reserved
    uint8_t* p = grow(16);
    putBe64(p, addr);
    putBe32(p + 8, rkey);
    return *this;
  }
  WqeWriter& data(uint32_t len, uint32_t lkey, uint64_t addr) {  // be32 byte_count, be32 lkey, be64 addr
    uint8_t* p = grow(16);
    putBe32(p, len);
    putBe32(p + 4, lkey);
    putBe64(p + 8, addr);
    return *this;
  }
  WqeWriter& inlineData(const void* src, uint32_t len) {  // be32 len | INLINE, bytes, pad to 16
    uint8_t* p = grow((4 + len + 15) / 16 * 16);
    putBe32(p, len | kInlineFlag);
    std::memcpy(p + 4, src, len);
    return *this;
  }
  WqeWriter& fetchAdd(uint64_t add) {  // be64 swap_add, be64 compare
    putBe64(grow(16), add);
    return *this;
  }
  WqeWriter& maskedFa32(uint32_t add, uint32_t boundary) {  // be32 add, be32 boundary, 8 reserved
    uint8_t* p = grow(16);
    putBe32(p, add);
    putBe32(p + 4, boundary);
    return *this;
  }
  WqeWriter& maskedFa64(uint64_t add, uint64_t boundary) {  // be64 add, be64 boundary
    uint8_t* p = grow(16);
    putBe64(p, add);
    putBe64(p + 8, boundary);
    return *this;
  }
  WqeWriter& ds(uint8_t value) {  // overrides the DS that done() would compute
    dsOverride_ = value;
    return *this;
  }
  std::vector<uint8_t> done() {
    b_[7] = dsOverride_ ? dsOverride_ : (uint8_t)(b_.size() / 16);
    return b_;
  }

 private:
  uint8_t* grow(size_t n) {
    size_t at = b_.size();
    b_.resize(at + n, 0);
    return &b_[at];
  }
  std::vector<uint8_t> b_;
  uint8_t dsOverride_ = 0;
};

// Copies a WQE into the send ring at the producer counter, one WQEBB at a time (so it wraps), and
// advances the counter. Returns the WQE's index.
uint16_t post(Rank& r, const std::vector<uint8_t>& wqe) {
  const uint16_t index = r.producer;
  const size_t bbs = (wqe.size() + 63) / 64;
  for (size_t i = 0; i < bbs; i++) {
    uint8_t* slot = r.sq.p() + ((index + i) & ((1u << r.logSq) - 1)) * 64;
    std::memset(slot, 0, 64);
    std::memcpy(slot, wqe.data() + i * 64, std::min<size_t>(64, wqe.size() - i * 64));
  }
  r.producer = (uint16_t)(r.producer + bbs);
  return index;
}

// Publishes the producer counter in dbrec[1] (be32) and lets the device read it.
void ring(Rank& r) {
  putBe32(r.sqDbrec.p() + 4, r.producer);
  EXPECT(r.nic.pollSqDoorbell(r.qpn) == Status::kOk);
}

std::vector<uint8_t> nopWqe(const Rank& r, uint8_t flags = kCqUpdate) {
  return WqeWriter(r, kOpNop, flags).done();
}

std::vector<uint8_t> writeWqe(const Rank& r, uint64_t raddr, uint32_t rkey, uint32_t len, uint32_t lkey,
                           uint64_t laddr, uint8_t flags = kCqUpdate) {
  return WqeWriter(r, kOpWrite, flags).raddr(raddr, rkey).data(len, lkey, laddr).done();
}

std::vector<uint8_t> fetchAddWqe(const Rank& r, uint64_t raddr, uint32_t rkey, uint64_t add, uint32_t lkey,
                              uint64_t result, uint8_t flags = kCqUpdate) {
  return WqeWriter(r, kOpFetchAdd, flags).raddr(raddr, rkey).fetchAdd(add).data(8, lkey, result).done();
}

// ---- reading CQEs ----------------------------------------------------------------------------------

struct Cqe {
  uint8_t opcode, owner, syndrome, vendor, wqeOpcode;
  uint32_t qpn, byteCount;
  uint16_t wqeCounter;
};

uint8_t* cqeAt(Rank& r, uint32_t index) { return r.cq.p() + (index & ((1u << r.logCq) - 1)) * 64; }

// A CQE is software's when its opcode is valid and its owner bit equals (consumer >> logSize) & 1.
bool poll(Rank& r, Cqe* out) {
  const uint8_t* c = cqeAt(r, r.cqConsumer);
  uint8_t opOwn = __atomic_load_n(&c[kCqeOpOwn], __ATOMIC_ACQUIRE);
  if ((opOwn >> 4) == kCqeInvalid || (opOwn & 1) != ((r.cqConsumer >> r.logCq) & 1)) return false;
  out->opcode = opOwn >> 4;
  out->owner = opOwn & 1;
  out->syndrome = c[kCqeSyndrome];
  out->vendor = c[kCqeVendor];
  out->wqeOpcode = c[kCqeOpcodeQpn];
  out->qpn = getBe32(c + kCqeOpcodeQpn) & 0xffffff;
  out->byteCount = getBe32(c + kCqeByteCnt);
  out->wqeCounter = getBe16(c + kCqeCounter);
  r.cqConsumer++;
  putBe32(r.cqDbrec.p(), r.cqConsumer & 0xffffff);  // dbrec[0]: the consumer index
  return true;
}

std::vector<Cqe> drain(Rank& r) {
  std::vector<Cqe> all;
  Cqe c;
  while (poll(r, &c)) all.push_back(c);
  return all;
}

void expectOk(const Cqe& c, uint16_t counter, uint8_t wqeOpcode, uint32_t byteCount) {
  EXPECT_EQ((int)c.opcode, (int)kCqeReq);
  EXPECT_EQ(c.wqeCounter, counter);
  EXPECT_EQ((int)c.wqeOpcode, (int)wqeOpcode);
  EXPECT_EQ(c.byteCount, byteCount);
}

void expectErr(const Cqe& c, uint16_t counter, uint8_t syndrome, uint8_t vendor) {
  EXPECT_EQ((int)c.opcode, (int)kCqeReqErr);
  EXPECT_EQ(c.wqeCounter, counter);
  EXPECT_MSG(c.syndrome == syndrome, "syndrome 0x%x, expected 0x%x", c.syndrome, syndrome);
  EXPECT_MSG(c.vendor == vendor, "vendor syndrome 0x%x, expected 0x%x", c.vendor, vendor);
}

// Posts one WQE (ring it alone) and returns its only CQE.
Cqe runOne(Rank& r, const std::vector<uint8_t>& wqe) {
  post(r, wqe);
  ring(r);
  std::vector<Cqe> c = drain(r);
  EXPECT_EQ(c.size(), (size_t)1);
  return c[0];
}

void fill(Block& b, uint8_t seed) {
  for (size_t i = 0; i < b.size(); i++) b.p()[i] = (uint8_t)(seed + i * 7);
}

bool allBytes(const uint8_t* p, size_t n, uint8_t v) {
  return std::all_of(p, p + n, [v](uint8_t x) { return x == v; });
}

// The masked fetch-add as Mellanox documents it (MFetchAdd pseudo-code): a bit-serial adder whose
// carry into bit i+1 is dropped when field_boundary has bit i set.
uint64_t bitSerialMaskedAdd(uint64_t va, uint64_t add, uint64_t boundary, unsigned bits) {
  uint64_t out = 0, carry = 0;
  for (unsigned i = 0; i < bits; i++) {
    uint64_t sum = carry + ((va >> i) & 1) + ((add >> i) & 1);
    out |= (sum & 1) << i;
    carry = (sum >> 1) && !((boundary >> i) & 1);
  }
  return out;
}

}  // namespace

// ---- cases -----------------------------------------------------------------------------------------

LL_TEST(rdma_write_exact_bytes) {
  Pair p;
  Block src(1024), dst(4096);
  fill(src, 1);
  std::memset(dst.p(), 0xee, dst.size());
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  Cqe c = runOne(p.a, writeWqe(p.a, dst.addr() + 17, r.rkey, 1000, l.lkey, src.addr() + 3));
  expectOk(c, 0, kOpWrite, 1000);
  EXPECT_EQ(c.qpn, p.a.qpn);
  EXPECT(std::memcmp(dst.p() + 17, src.p() + 3, 1000) == 0);
  EXPECT(allBytes(dst.p(), 17, 0xee));
  EXPECT(allBytes(dst.p() + 1017, dst.size() - 1017, 0xee));
  EXPECT_EQ(p.a.nic.qp(p.a.qpn)->consumerIndex(), (uint16_t)1);
}

LL_TEST(rdma_write_gather_list) {
  Pair p;
  Block src(256), dst(256);
  fill(src, 9);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  const char mid[] = "inline-middle";
  auto w = WqeWriter(p.a, kOpWrite, kCqUpdate)
               .raddr(dst.addr(), r.rkey)
               .data(10, l.lkey, src.addr())
               .inlineData(mid, 13)
               .data(20, l.lkey, src.addr() + 100)
               .done();
  expectOk(runOne(p.a, w), 0, kOpWrite, 43);
  EXPECT(std::memcmp(dst.p(), src.p(), 10) == 0);
  EXPECT(std::memcmp(dst.p() + 10, mid, 13) == 0);
  EXPECT(std::memcmp(dst.p() + 23, src.p() + 100, 20) == 0);
  EXPECT(allBytes(dst.p() + 43, dst.size() - 43, 0));
}

// Inline sizes 4/8/64/200 take 1/1/2/4 WQEBBs (ctrl 16 + raddr 16 + round16(4 + len)).
LL_TEST(inline_write_sizes) {
  Pair p;
  Block dst(1024);
  std::memset(dst.p(), 0xee, dst.size());
  MemoryKeys r = p.b.reg(dst, kRw);
  const uint32_t sizes[] = {4, 8, 64, 200};
  uint8_t payload[200];
  uint64_t at = 0;
  for (uint32_t n : sizes) {
    for (uint32_t i = 0; i < n; i++) payload[i] = (uint8_t)(n + i * 3);
    uint16_t index = p.a.producer;
    Cqe c = runOne(p.a, WqeWriter(p.a, kOpWrite, kCqUpdate).raddr(dst.addr() + at, r.rkey)
                            .inlineData(payload, n).done());
    expectOk(c, index, kOpWrite, n);
    EXPECT(std::memcmp(dst.p() + at, payload, n) == 0);
    EXPECT_EQ(dst.p()[at + n], (uint8_t)0xee);  // not one byte more
    at += n + 8;
  }
  EXPECT_EQ(p.a.producer, (uint16_t)8);
  EXPECT_EQ(p.a.nic.qp(p.a.qpn)->consumerIndex(), (uint16_t)8);
}

// A 4-WQEBB inline WQE starting two WQEBBs before the end of an 8-WQEBB ring continues at slot 0.
LL_TEST(inline_write_wraps_ring) {
  Pair p(3);
  Block dst(512);
  MemoryKeys r = p.b.reg(dst, kRw);
  for (int i = 0; i < 6; i++) post(p.a, nopWqe(p.a, 0));
  ring(p.a);
  uint8_t payload[200];
  for (int i = 0; i < 200; i++) payload[i] = (uint8_t)(255 - i);
  Cqe c = runOne(p.a, WqeWriter(p.a, kOpWrite, kCqUpdate).raddr(dst.addr() + 5, r.rkey)
                          .inlineData(payload, 200).done());
  expectOk(c, 6, kOpWrite, 200);
  EXPECT(std::memcmp(dst.p() + 5, payload, 200) == 0);
  EXPECT_EQ(p.a.nic.qp(p.a.qpn)->consumerIndex(), (uint16_t)10);
}

// The old value comes back in host order; the target word adds modulo 2^64.
LL_TEST(fetch_add_returns_old) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  uint64_t start = 0x1122334455667788ull;
  std::memcpy(target.p() + 8, &start, 8);
  expectOk(runOne(p.a, fetchAddWqe(p.a, target.addr() + 8, t.rkey, 0x10, res.lkey, result.addr())), 0,
           kOpFetchAdd, 8);
  uint64_t old, now;
  std::memcpy(&old, result.p(), 8);
  std::memcpy(&now, target.p() + 8, 8);
  EXPECT_EQ(old, start);
  EXPECT_EQ(now, start + 0x10);
  runOne(p.a, fetchAddWqe(p.a, target.addr() + 8, t.rkey, ~0ull, res.lkey, result.addr() + 8));  // -1
  std::memcpy(&old, result.p() + 8, 8);
  std::memcpy(&now, target.p() + 8, 8);
  EXPECT_EQ(old, start + 0x10);
  EXPECT_EQ(now, start + 0xf);
  EXPECT(allBytes(target.p(), 8, 0) && allBytes(target.p() + 16, 48, 0));
}

// Two 16-bit fields (field MSBs at bits 15 and 31): the low field wraps without carrying into the
// high one. The 4-byte result lands in host order and nothing past it is written.
LL_TEST(masked_fetch_add_32) {
  Pair p;
  Block target(64), result(64);
  std::memset(result.p(), 0xee, result.size());
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  uint32_t start = 0x0001ffff;
  std::memcpy(target.p() + 4, &start, 4);
  auto w = WqeWriter(p.a, kOpMaskedFa, kCqUpdate, kExt4).raddr(target.addr() + 4, t.rkey)
               .maskedFa32(0x00010001, 0x80008000).data(4, res.lkey, result.addr()).done();
  expectOk(runOne(p.a, w), 0, kOpMaskedFa, 4);
  uint32_t old, now;
  std::memcpy(&old, result.p(), 4);
  std::memcpy(&now, target.p() + 4, 4);
  EXPECT_EQ(old, start);
  EXPECT_EQ(now, 0x00020000u);  // a plain add would give 0x00030000
  EXPECT(allBytes(result.p() + 4, 60, 0xee));
  EXPECT(allBytes(target.p(), 4, 0) && allBytes(target.p() + 8, 56, 0));
  // Boundary 0 is one 32-bit field: a plain add modulo 2^32.
  w = WqeWriter(p.a, kOpMaskedFa, kCqUpdate, kExt4).raddr(target.addr() + 4, t.rkey)
          .maskedFa32(0xffffffff, 0).data(4, res.lkey, result.addr() + 8).done();
  runOne(p.a, w);
  std::memcpy(&now, target.p() + 4, 4);
  EXPECT_EQ(now, 0x0001ffffu);
}

LL_TEST(masked_fetch_add_64) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  struct Case {
    uint64_t start, add, boundary, expect;
  } cases[] = {
      {0x00000005ffffffffull, 0x0000000100000001ull, 0x8000000080000000ull, 0x0000000600000000ull},
      {0x01ff02fe03fd04fcull, 0x0101010101010101ull, 0x8080808080808080ull, 0x020003ff04fe05fdull},
      {0xffffffffffffffffull, 1, 0, 0},
  };
  for (const Case& k : cases) {
    std::memcpy(target.p() + 16, &k.start, 8);
    auto w = WqeWriter(p.a, kOpMaskedFa, kCqUpdate, kExt8).raddr(target.addr() + 16, t.rkey)
                 .maskedFa64(k.add, k.boundary).data(8, res.lkey, result.addr()).done();
    const uint16_t index = p.a.producer;
    expectOk(runOne(p.a, w), index, kOpMaskedFa, 8);
    uint64_t old, now;
    std::memcpy(&old, result.p(), 8);
    std::memcpy(&now, target.p() + 16, 8);
    EXPECT_EQ(old, k.start);
    EXPECT_MSG(now == k.expect, "0x%llx + 0x%llx (boundary 0x%llx) = 0x%llx", (unsigned long long)k.start,
               (unsigned long long)k.add, (unsigned long long)k.boundary, (unsigned long long)now);
  }
}

// Random operands through WQEs against the documented bit-serial definition, both operand sizes.
LL_TEST(masked_fetch_add_random_vs_bit_serial) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 400; i++) {
    const bool wide = i % 2;
    uint64_t start = rng(), add = rng(), boundary = rng() & rng();  // sparse-ish boundaries
    if (!wide) start &= 0xffffffff, add &= 0xffffffff, boundary &= 0xffffffff;
    std::memcpy(target.p(), &start, wide ? 8 : 4);
    WqeWriter w(p.a, kOpMaskedFa, kCqUpdate, wide ? kExt8 : kExt4);
    w.raddr(target.addr(), t.rkey);
    if (wide) w.maskedFa64(add, boundary);
    else w.maskedFa32((uint32_t)add, (uint32_t)boundary);
    Cqe c = runOne(p.a, w.data(wide ? 8 : 4, res.lkey, result.addr()).done());
    EXPECT_EQ((int)c.opcode, (int)kCqeReq);
    uint64_t now = 0;
    std::memcpy(&now, target.p(), wide ? 8 : 4);
    EXPECT_EQ(now, bitSerialMaskedAdd(start, add, boundary, wide ? 64 : 32));
  }
}

LL_TEST(nop_with_cq_update) {
  Pair p;
  post(p.a, nopWqe(p.a, 0));  // unsignaled: executes, writes no CQE
  ring(p.a);
  EXPECT(drain(p.a).empty());
  Cqe c = runOne(p.a, nopWqe(p.a));
  expectOk(c, 1, kOpNop, 0);
  EXPECT_EQ(c.qpn, p.a.qpn);
  EXPECT_EQ(p.a.nic.qp(p.a.qpn)->stats().executed, (uint64_t)2);
}

// A 4-entry CQ: CQE i sits in slot i % 4 with owner bit (i >> 2) & 1, and software never mistakes
// the previous pass's CQE for a new one.
LL_TEST(cqe_owner_bits_across_wraparound) {
  Pair p(6, 2);
  for (uint32_t i = 0; i < 11; i++) {
    Cqe none;
    EXPECT(!poll(p.a, &none));  // the slot still holds the previous pass (or the invalid marker)
    post(p.a, nopWqe(p.a));
    ring(p.a);
    const uint8_t opOwn = cqeAt(p.a, i)[kCqeOpOwn];
    EXPECT_EQ(opOwn & 1, (int)((i >> 2) & 1));
    EXPECT_EQ(opOwn >> 4, (int)kCqeReq);
    Cqe c;
    EXPECT(poll(p.a, &c));
    EXPECT_EQ(c.wqeCounter, (uint16_t)i);
  }
}

// The first failing WQE reports REMOTE_ACCESS_ERR at mlx5_err_cqe's syndrome byte (55) with its vendor
// syndrome (54); the QP goes to ERR and everything after it, signaled or not, is flushed.
LL_TEST(bad_rkey_remote_access_error_then_flush) {
  Pair p;
  Block src(64), dst(64);
  fill(src, 3);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  post(p.a, writeWqe(p.a, dst.addr(), kUnknownKey, 16, l.lkey, src.addr(), 0));  // unsignaled
  post(p.a, writeWqe(p.a, dst.addr(), r.rkey, 16, l.lkey, src.addr()));
  post(p.a, nopWqe(p.a, 0));
  ring(p.a);
  std::vector<Cqe> c = drain(p.a);
  EXPECT_EQ(c.size(), (size_t)3);
  const uint8_t* raw = cqeAt(p.a, 0);
  EXPECT_EQ((int)raw[55], (int)kRemoteAccess);
  EXPECT_EQ((int)raw[54], 0x88);
  EXPECT_EQ(raw[63] >> 4, (int)kCqeReqErr);
  EXPECT_EQ((int)raw[56], (int)kOpWrite);  // s_wqe_opcode
  expectErr(c[0], 0, kRemoteAccess, 0x88);
  EXPECT_EQ(c[0].qpn, p.a.qpn);
  expectErr(c[1], 1, kFlush, 0xf9);
  expectErr(c[2], 2, kFlush, 0xf9);
  EXPECT(p.a.state() == QpState::kError);
  EXPECT(allBytes(dst.p(), 64, 0));
  expectErr(runOne(p.a, nopWqe(p.a)), 3, kFlush, 0xf9);  // later doorbells flush too
  QpStats stats = p.a.nic.qp(p.a.qpn)->stats();
  EXPECT(stats.executed == 0 && stats.failed == 4);
}

LL_TEST(out_of_bounds_remote_write) {
  Pair p;
  Block src(64), dst(4096);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr() + 4090, r.rkey, 16, l.lkey, src.addr())), 0, kRemoteAccess,
            0x88);
  reconnect(p.a, 1, p.b.qpn);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr() - 8, r.rkey, 16, l.lkey, src.addr())), 0, kRemoteAccess,
            0x88);
  reconnect(p.a, 1, p.b.qpn);
  expectOk(runOne(p.a, writeWqe(p.a, dst.addr() + 4080, r.rkey, 16, l.lkey, src.addr())), 0, kOpWrite, 16);
}

LL_TEST(write_without_remote_write_right) {
  Pair p;
  Block src(64), dst(64);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite);
  MemoryKeys r = p.b.reg(dst, kAccessLocalWrite | kAccessRemoteRead | kAccessRemoteAtomic);
  std::memset(dst.p(), 0xee, dst.size());
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, l.lkey, src.addr())), 0, kRemoteAccess, 0x88);
  EXPECT(allBytes(dst.p(), 64, 0xee));
  EXPECT(p.a.state() == QpState::kError);
}

LL_TEST(atomic_without_remote_atomic_right) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kRw), res = p.a.reg(result, kAccessLocalWrite);
  Cqe c = runOne(p.a, fetchAddWqe(p.a, target.addr(), t.rkey, 1, res.lkey, result.addr()));
  expectErr(c, 0, kRemoteAccess, 0x88);
  EXPECT(allBytes(target.p(), 64, 0));
}

// A zero-length RDMA write validates neither rkey nor address (IB), so it succeeds with any rkey.
LL_TEST(zero_length_write_needs_no_rkey) {
  Pair p;
  expectOk(runOne(p.a, WqeWriter(p.a, kOpWrite, kCqUpdate).raddr(0x1000, 0xdead).done()), 0, kOpWrite, 0);
}

// Local key errors: an unknown lkey, a gather past the end of its region, and an atomic result
// buffer without LOCAL_WRITE all give LOCAL_PROT_ERR before anything reaches the remote.
LL_TEST(bad_lkey_local_protection_error) {
  Pair p;
  Block src(64), dst(64), target(64), ro(64);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw), t = p.b.reg(target, kAll);
  MemoryKeys readOnly = p.a.reg(ro, kAccessRemoteRead);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, kUnknownKey, src.addr())), 0, kLocalProt, 0x51);
  EXPECT(p.a.state() == QpState::kError);
  reconnect(p.a, 1, p.b.qpn);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 65, l.lkey, src.addr())), 0, kLocalProt, 0x51);
  reconnect(p.a, 1, p.b.qpn);
  expectErr(runOne(p.a, fetchAddWqe(p.a, target.addr(), t.rkey, 5, readOnly.lkey, ro.addr())), 0, kLocalProt,
            0x51);
  EXPECT(allBytes(dst.p(), 64, 0) && allBytes(target.p(), 64, 0));
}

// IB lets only RTS post sends. A doorbell on a QP in RTR completes its first WQE with
// LOCAL_QP_OP_ERR, moves the QP to ERR and flushes the rest; nothing reaches the remote.
LL_TEST(qp_not_in_rts_error_cqe) {
  Pair p(6, 6, QpState::kRtr);
  Block src(64), dst(64);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  post(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, l.lkey, src.addr()));
  post(p.a, nopWqe(p.a, 0));
  ring(p.a);
  std::vector<Cqe> c = drain(p.a);
  EXPECT_EQ(c.size(), (size_t)2);
  expectErr(c[0], 0, kLocalQpOp, 0x68);
  expectErr(c[1], 1, kFlush, 0xf9);
  EXPECT(p.a.state() == QpState::kError);
  EXPECT(allBytes(dst.p(), 64, 0));
  // A QP in RST, INIT and RTR alike.
  EXPECT(p.a.nic.modifyQp(p.a.qpn, QpState::kReset) == Status::kOk);
  p.a.producer = 0;
  expectErr(runOne(p.a, nopWqe(p.a)), 0, kLocalQpOp, 0x68);
}

// What the model does not implement, or a ctrl segment that disagrees with its ring position.
LL_TEST(unsupported_or_malformed_wqe_local_qp_op_error) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  expectErr(runOne(p.a, WqeWriter(p.a, kOpSend, kCqUpdate).done()), 0, kLocalQpOp, 0x68);
  reconnect(p.a, 1, p.b.qpn);
  auto w16 = WqeWriter(p.a, kOpMaskedFa, kCqUpdate, kExt16).raddr(target.addr(), t.rkey)
                 .maskedFa64(1, 0).data(16, res.lkey, result.addr()).done();
  expectErr(runOne(p.a, w16), 0, kLocalQpOp, 0x68);
  reconnect(p.a, 1, p.b.qpn);
  auto wrongIndex = nopWqe(p.a);
  wrongIndex[2] ^= 1;  // wqe_index 1 at WQEBB 0
  expectErr(runOne(p.a, wrongIndex), 0, kLocalQpOp, 0x68);
  reconnect(p.a, 1, p.b.qpn);
  // DS says 4 units, but after ctrl and raddr the inline segment needs 3 (4 + 40 bytes -> 48).
  uint8_t bytes[40] = {};
  auto tooShort = WqeWriter(p.a, kOpWrite, kCqUpdate).raddr(target.addr(), t.rkey)
                      .inlineData(bytes, 40).ds(4).done();
  tooShort.resize(64);  // post the one WQEBB that DS claims
  expectErr(runOne(p.a, tooShort), 0, kLocalQpOp, 0x68);
  EXPECT(allBytes(target.p(), 64, 0));
}

LL_TEST(misaligned_atomic_invalid_request) {
  Pair p;
  Block target(64), result(64);
  MemoryKeys t = p.b.reg(target, kAll), res = p.a.reg(result, kAccessLocalWrite);
  expectErr(runOne(p.a, fetchAddWqe(p.a, target.addr() + 4, t.rkey, 1, res.lkey, result.addr())), 0,
            kRemoteInvalReq, 0x8a);
  EXPECT(allBytes(target.p(), 64, 0));
}

// Nothing answers for a remote QP that is not yet in RTR (or a peer that does not exist): the
// requester runs out of retries.
LL_TEST(remote_not_ready_retry_exceeded) {
  Pair p(6, 6, QpState::kRts, QpState::kInit);
  Block src(64), dst(64);
  MemoryKeys l = p.a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, l.lkey, src.addr())), 0, kRetryExceeded, 0x81);
  EXPECT(allBytes(dst.p(), 64, 0));
  EXPECT(p.a.nic.modifyQp(p.a.qpn, QpState::kReset) == Status::kOk);
  p.a.producer = 0;
  bringUp(p.a, 7, p.b.qpn);  // no rank 7 on the wire
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, l.lkey, src.addr())), 0, kRetryExceeded, 0x81);
}

// A 16-WQEBB send queue driven past ten times its size by WQEs of 1-3 WQEBBs, mostly unsignaled.
// Software frees ring space only from CQEs (each wqe_counter frees every WQE up to it), exactly as a
// GPU would; every signaled WQE must complete once, in order, and every write must land.
LL_TEST(send_queue_wraps_ten_times) {
  Pair p(4, 3);
  Rank& a = p.a;
  const uint32_t ringBbs = 1u << a.logSq;
  constexpr int kWqes = 512, kSlot = 128;
  Block src(64), dst(kSlot * kWqes), target(64), result(64);
  fill(src, 5);
  MemoryKeys l = a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw), t = p.b.reg(target, kAll);
  MemoryKeys res = a.reg(result, kAccessLocalWrite);
  struct Posted {
    uint16_t index, bbs;
    bool signaled;
  };
  std::deque<Posted> outstanding;
  std::deque<uint16_t> expectCqes;
  uint16_t freed = 0;  // WQEBB counter up to which the ring is free again
  size_t cqes = 0, bbsPosted = 0, unrung = 0;
  int sinceSignal = 0, adds = 0;
  std::vector<int> kinds;
  std::mt19937 rng(3);
  auto reap = [&]() {
    Cqe c;
    while (poll(a, &c)) {
      EXPECT_EQ((int)c.opcode, (int)kCqeReq);
      EXPECT(!expectCqes.empty());
      EXPECT_EQ(c.wqeCounter, expectCqes.front());
      expectCqes.pop_front();
      cqes++;
      while (!outstanding.empty()) {  // everything up to the reported WQE is done
        Posted done = outstanding.front();
        outstanding.pop_front();
        freed = (uint16_t)(done.index + done.bbs);
        if (done.index == c.wqeCounter) break;
      }
    }
  };
  for (int i = 0; i < kWqes; i++) {
    const int kind = (int)(rng() % 4);
    kinds.push_back(kind);
    const uint16_t bbs = kind == 2 ? 3 : 1;
    while ((uint16_t)(a.producer - freed) + bbs > ringBbs) {
      ring(a);
      unrung = 0;
      reap();
    }
    // Signal every fourth WQE, and whenever the ring would otherwise fill with unsignaled WQEs.
    const bool signaled = ++sinceSignal == 4 || (uint32_t)(uint16_t)(a.producer - freed) + bbs + 3 > ringBbs;
    const uint8_t flags = signaled ? kCqUpdate : 0;
    std::vector<uint8_t> w;
    if (kind == 0) w = nopWqe(a, flags);
    if (kind == 1) w = writeWqe(a, dst.addr() + i * kSlot, r.rkey, 64, l.lkey, src.addr(), flags);
    if (kind == 2) {  // ctrl 16 + raddr 16 + inline 4 + 100 -> 112: 144 bytes, 3 WQEBBs
      uint8_t bytes[100];
      for (int k = 0; k < 100; k++) bytes[k] = (uint8_t)(i + k);
      w = WqeWriter(a, kOpWrite, flags).raddr(dst.addr() + i * kSlot, r.rkey).inlineData(bytes, 100).done();
    }
    if (kind == 3) {
      w = fetchAddWqe(a, target.addr(), t.rkey, 1, res.lkey, result.addr(), flags);
      adds++;
    }
    EXPECT_EQ((w.size() + 63) / 64, (size_t)bbs);
    uint16_t index = post(a, w);
    outstanding.push_back({index, bbs, signaled});
    if (signaled) {
      expectCqes.push_back(index);
      sinceSignal = 0;
    }
    bbsPosted += bbs;
    if (++unrung == 1 + rng() % 5) {
      ring(a);
      unrung = 0;
    }
  }
  ring(a);
  reap();
  EXPECT(expectCqes.empty());
  EXPECT(bbsPosted >= 10 * ringBbs);
  EXPECT_EQ(a.nic.qp(a.qpn)->consumerIndex(), a.producer);
  EXPECT_EQ(a.nic.qp(a.qpn)->stats().executed, (uint64_t)kWqes);
  EXPECT(cqes >= kWqes / 4);
  uint64_t count;
  std::memcpy(&count, target.p(), 8);
  EXPECT_EQ(count, (uint64_t)adds);
  for (int i = 0; i < kWqes; i++) {
    const uint8_t* slot = dst.p() + i * kSlot;
    if (kinds[i] == 1) EXPECT(std::memcmp(slot, src.p(), 64) == 0 && allBytes(slot + 64, 64, 0));
    if (kinds[i] == 2)
      for (int k = 0; k < 100; k++) EXPECT_EQ(slot[k], (uint8_t)(i + k));
    if (kinds[i] == 0 || kinds[i] == 3) EXPECT(allBytes(slot, kSlot, 0));
  }
  EXPECT(!a.nic.cq(a.cqn)->overrun());
}

// The WQEBB counter is 16 bits: 70000 WQEs carry it past 0xffff, and CQEs report it modulo 2^16.
LL_TEST(wqe_counter_wraps_16_bits) {
  Pair p(6, 4);
  Rank& a = p.a;
  uint32_t posted = 0;
  while (posted < 70000) {
    for (int k = 0; k < 32; k++, posted++) post(a, nopWqe(a, k == 31 ? kCqUpdate : 0));
    ring(a);
    Cqe c;
    EXPECT(poll(a, &c));
    EXPECT_EQ(c.wqeCounter, (uint16_t)(posted - 1));
    EXPECT(!poll(a, &c));
  }
  EXPECT_EQ(a.nic.qp(a.qpn)->consumerIndex(), (uint16_t)posted);
}

// RC order: each data write is followed on the same QP by a fetch-add on a flag. A reader on the
// target side that sees the flag at f must see the data of all f writes before it.
LL_TEST(rc_order_write_then_flag) {
  Pair p(6, 6);
  Rank& a = p.a;
  constexpr int kWrites = 256, kBytes = 512;
  Block src(kBytes * kWrites), dst(kBytes * kWrites), flag(64), result(64);
  for (int i = 0; i < kWrites; i++) std::memset(src.p() + i * kBytes, i + 1, kBytes);
  MemoryKeys l = a.reg(src, kAccessLocalWrite), r = p.b.reg(dst, kRw), f = p.b.reg(flag, kAll);
  MemoryKeys res = a.reg(result, kAccessLocalWrite);
  std::atomic<int> violations{0};
  std::thread reader([&] {
    int checked = 0;
    while (checked < kWrites) {
      int seen = (int)__atomic_load_n(reinterpret_cast<uint64_t*>(flag.p()), __ATOMIC_ACQUIRE);
      for (; checked < seen; checked++)
        if (!allBytes(dst.p() + checked * kBytes, kBytes, (uint8_t)(checked + 1))) violations++;
    }
  });
  int fenced = 0;
  size_t cqes = 0;
  for (int i = 0; i < kWrites; i++) {
    if ((uint16_t)(a.producer - a.nic.qp(a.qpn)->consumerIndex()) + 2u > (1u << a.logSq)) {
      ring(a);  // the model runs everything rung, so the whole ring is free again
      cqes += drain(a).size();
    }
    post(a, writeWqe(a, dst.addr() + i * kBytes, r.rkey, kBytes, l.lkey, src.addr() + i * kBytes, 0));
    const uint8_t fence = i % 2 ? kFence : 0;  // the fence changes nothing: execution is in order
    fenced += i % 2;
    const uint8_t signal = i % 8 == 7 ? kCqUpdate : 0;
    post(a, fetchAddWqe(a, flag.addr(), f.rkey, 1, res.lkey, result.addr(), signal | fence));
    if (i % 3 == 2) ring(a);
  }
  ring(a);
  reader.join();
  cqes += drain(a).size();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(cqes, (size_t)kWrites / 8);
  EXPECT_EQ(a.nic.qp(a.qpn)->stats().fenced, (uint64_t)fenced);
  EXPECT_EQ(a.nic.qp(a.qpn)->stats().executed, (uint64_t)2 * kWrites);
}

// A CQ whose consumer never advances overruns on its fifth CQE: that CQE is dropped and the CQ
// writes nothing more. With overrun ignored, the ring is simply overwritten.
LL_TEST(cq_overrun) {
  Pair p(6, 2);
  for (int i = 0; i < 5; i++) post(p.a, nopWqe(p.a));
  ring(p.a);
  EXPECT(p.a.nic.cq(p.a.cqn)->overrun());
  EXPECT_EQ(getBe16(cqeAt(p.a, 0) + kCqeCounter), (uint16_t)0);
  EXPECT_EQ(cqeAt(p.a, 0)[kCqeOpOwn] & 1, 0);
  Pair q(6, 2, QpState::kRts, QpState::kRts, true);
  for (int i = 0; i < 5; i++) post(q.a, nopWqe(q.a));
  ring(q.a);
  EXPECT(!q.a.nic.cq(q.a.cqn)->overrun());
  EXPECT_EQ(getBe16(cqeAt(q.a, 0) + kCqeCounter), (uint16_t)4);
  EXPECT_EQ(cqeAt(q.a, 0)[kCqeOpOwn] & 1, 1);
}

// Doorbells: the direct ring call and dbrec[1] agree; a producer more than a ring ahead is refused
// and executes nothing.
LL_TEST(doorbell_record_and_bounds) {
  Pair p(3);
  for (int i = 0; i < 3; i++) post(p.a, nopWqe(p.a));
  EXPECT(p.a.nic.ringSq(p.a.qpn, 2) == Status::kOk);
  EXPECT_EQ(drain(p.a).size(), (size_t)2);
  ring(p.a);  // dbrec says 3
  EXPECT_EQ(drain(p.a).size(), (size_t)1);
  EXPECT(p.a.nic.ringSq(p.a.qpn, 3 + 9) == Status::kInvalidArgument);
  EXPECT_EQ(p.a.nic.qp(p.a.qpn)->consumerIndex(), (uint16_t)3);
  EXPECT(p.a.nic.ringSq(0xbad, 0) == Status::kNotFound);
}

LL_TEST(qp_state_machine) {
  LoopbackWire wire;
  Rank r(wire, 0, 3, 3, false);
  RemoteQp remote{0, r.qpn};
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kRts, &remote) == Status::kInvalidState);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kInit) == Status::kOk);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kRtr) == Status::kInvalidArgument);  // RTR needs the remote
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kRtr, &remote) == Status::kOk);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kInit) == Status::kInvalidState);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kRts) == Status::kOk);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kError) == Status::kOk);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kRts) == Status::kInvalidState);
  EXPECT(r.nic.modifyQp(r.qpn, QpState::kReset) == Status::kOk);
  EXPECT(r.state() == QpState::kReset);
  EXPECT(r.nic.modifyQp(0xbad, QpState::kInit) == Status::kNotFound);
  QpConfig noCq;
  noCq.sqAddr = r.sq.addr();
  noCq.logSqBbs = 3;
  noCq.dbrecAddr = r.sqDbrec.addr();
  noCq.cqn = 0xbad;
  uint32_t qpn;
  EXPECT(r.nic.createQp(noCq, &qpn) == Status::kNotFound);
  noCq.cqn = r.cqn;
  noCq.sqAddr += 32;  // rings are 64-byte aligned
  EXPECT(r.nic.createQp(noCq, &qpn) == Status::kInvalidArgument);
}

// Verbs rules for regions, key checks, and a key that stops working once its region is gone.
LL_TEST(memory_registration_rules) {
  Pair p;
  Block src(64), dst(128);
  ProtectionDomain& pd = p.b.nic.pd();
  MemoryKeys k;
  EXPECT(pd.registerRegion(dst.addr(), dst.size(), kAccessRemoteWrite, &k) == Status::kInvalidArgument);
  const uint32_t atomicOnly = kAccessLocalWrite | kAccessRemoteAtomic;
  EXPECT(pd.registerRegion(dst.addr(), dst.size(), atomicOnly, &k) == Status::kOk);
  EXPECT(pd.registerRegion(dst.addr(), 0, kAccessLocalWrite, &k) == Status::kInvalidArgument);
  EXPECT(pd.registerRegion(dst.addr(), 8, 0x100, &k) == Status::kInvalidArgument);
  MemoryKeys r = p.b.reg(dst, kRw), l = p.a.reg(src, kAccessLocalWrite);
  EXPECT(r.lkey == r.rkey && r.rkey != k.rkey && r.rkey != 0x100 && r.rkey != 0);
  EXPECT(pd.check(r.rkey, dst.addr() + 64, 64, kAccessRemoteWrite) == KeyCheck::kOk);
  EXPECT(pd.check(r.rkey, dst.addr() + 65, 64, 0) == KeyCheck::kOutOfBounds);
  EXPECT(pd.check(r.rkey, dst.addr(), 8, kAccessRemoteAtomic) == KeyCheck::kNoAccess);
  EXPECT(pd.check(r.rkey + 1, dst.addr(), 8, 0) == KeyCheck::kBadKey);
  EXPECT(pd.deregisterRegion(r.rkey) == Status::kOk);
  EXPECT(pd.deregisterRegion(r.rkey) == Status::kNotFound);
  expectErr(runOne(p.a, writeWqe(p.a, dst.addr(), r.rkey, 8, l.lkey, src.addr())), 0, kRemoteAccess, 0x88);
}

// The model's PRM constants against rdma-core's header, where it is installed.
#if __has_include(<infiniband/mlx5dv.h>)
#include <cstddef>
#include <infiniband/mlx5dv.h>

#include "transport/ibgda/model/prm.h"
LL_TEST(prm_constants_match_mlx5dv) {
  static_assert(prm::kOpNop == MLX5_OPCODE_NOP && prm::kOpRdmaWrite == MLX5_OPCODE_RDMA_WRITE, "");
  static_assert(prm::kOpAtomicFetchAdd == MLX5_OPCODE_ATOMIC_FA, "");
  static_assert(prm::kOpAtomicMaskedFetchAdd == MLX5_OPCODE_ATOMIC_MASKED_FA, "");
  static_assert(prm::kCtrlCqUpdate == MLX5_WQE_CTRL_CQ_UPDATE && kFence == MLX5_WQE_CTRL_FENCE, "");
  static_assert(kOpSend == MLX5_OPCODE_SEND && kCqUpdate == MLX5_WQE_CTRL_CQ_UPDATE, "");
  static_assert(kCqeCounter == offsetof(mlx5_cqe64, wqe_counter) && kCqeInvalid == MLX5_CQE_INVALID, "");
  static_assert(prm::kInlineSeg == MLX5_INLINE_SEG && prm::kWqeBbBytes == MLX5_SEND_WQE_BB, "");
  static_assert(prm::kSqDbrecOffset == MLX5_SND_DBR * 4, "");
  static_assert(prm::kCtrlFmCeSe == offsetof(mlx5_wqe_ctrl_seg, fm_ce_se), "");
  static_assert(prm::kRaddrRkey == offsetof(mlx5_wqe_raddr_seg, rkey), "");
  static_assert(prm::kDataLkey == offsetof(mlx5_wqe_data_seg, lkey), "");
  static_assert(prm::kDataAddr == offsetof(mlx5_wqe_data_seg, addr), "");
  static_assert(prm::kCqeByteCnt == offsetof(mlx5_cqe64, byte_cnt) && kCqeByteCnt == prm::kCqeByteCnt, "");
  static_assert(prm::kCqeOpcodeQpn == offsetof(mlx5_cqe64, sop_drop_qpn), "");
  static_assert(prm::kCqeOpcodeQpn == offsetof(mlx5_err_cqe, s_wqe_opcode_qpn), "");
  static_assert(prm::kCqeWqeCounter == offsetof(mlx5_err_cqe, wqe_counter), "");
  static_assert(prm::kCqeOpOwn == offsetof(mlx5_cqe64, op_own), "");
  static_assert(prm::kCqeSyndrome == offsetof(mlx5_err_cqe, syndrome), "");
  static_assert(kCqeSyndrome == prm::kCqeSyndrome && kCqeVendor == prm::kCqeVendorSyndrome, "");
  static_assert(prm::kCqeVendorSyndrome == offsetof(mlx5_err_cqe, vendor_err_synd), "");
  static_assert(prm::kCqeReqErr == MLX5_CQE_REQ_ERR && prm::kCqeReq == MLX5_CQE_REQ, "");
  static_assert((int)prm::Syndrome::kLocalQpOpErr == MLX5_CQE_SYNDROME_LOCAL_QP_OP_ERR, "");
  static_assert((int)prm::Syndrome::kLocalProtErr == MLX5_CQE_SYNDROME_LOCAL_PROT_ERR, "");
  static_assert((int)prm::Syndrome::kWrFlushErr == MLX5_CQE_SYNDROME_WR_FLUSH_ERR, "");
  static_assert((int)prm::Syndrome::kRemoteAccessErr == MLX5_CQE_SYNDROME_REMOTE_ACCESS_ERR, "");
  static_assert((int)prm::Syndrome::kRemoteInvalReqErr == MLX5_CQE_SYNDROME_REMOTE_INVAL_REQ_ERR, "");
  static_assert((int)prm::Syndrome::kTransportRetryExcErr == MLX5_CQE_SYNDROME_TRANSPORT_RETRY_EXC_ERR, "");
  static_assert((int)prm::Syndrome::kLocalLengthErr == MLX5_CQE_SYNDROME_LOCAL_LENGTH_ERR, "");
  static_assert(sizeof(mlx5_err_cqe) == prm::kCqeBytes && sizeof(mlx5_cqe64) == prm::kCqeBytes, "");
}
#else
LL_TEST(prm_constants_match_mlx5dv) { LL_SKIP("<infiniband/mlx5dv.h> is not installed"); }
#endif

LL_TEST_MAIN()
