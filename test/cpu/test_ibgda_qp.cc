// The GPU-initiated send path (transport/ibgda/ibgda_qp.h), compiled for the host and driven against the
// software mlx5 device: two model ranks in one process over a LoopbackWire. Host threads play the GPU's
// threads: they reserve slots, write WQEs into the model's send ring and publish them through the doorbell
// record. A poller thread plays the NIC's doorbell logic: it polls the doorbell record and executes what it
// announces (NicModel::pollSqDoorbell), as hardware would, so posters and the device run concurrently.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "harness.h"
#include "nic_test_util.h"
#include "transport/ibgda/ibgda_qp.h"
#include "transport/ibgda/model/nic_model.h"

using namespace llnic;

namespace {

using llnictest::Block;

constexpr uint32_t kRw = kAccessLocalWrite | kAccessRemoteWrite;
constexpr uint32_t kAll = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead | kAccessRemoteAtomic;
constexpr uint32_t kUnknownKey = 0x00fedc5a;  // registered nowhere

// One rank: a model device with one CQ and one RC QP, and the LlIbgdaQp that posts to it. The BlueFlame
// register is a plain word here: the model takes its doorbells from the doorbell record.
struct Rank {
  Rank(LoopbackWire& wire, PeerId id, uint32_t logSq, uint32_t logCq)
      : nic(mem, wire), sq(64u << logSq), sqDbrec(64), cq(64u << logCq), cqDbrec(64) {
    for (size_t i = 0; i < (1u << logCq); i++)
      cq.p()[i * 64 + kLlMlx5CqeOpOwnOffset] = kLlMlx5CqeInvalid << 4;
    CqConfig c;
    c.ringAddr = cq.addr();
    c.logSize = logCq;
    c.dbrecAddr = cqDbrec.addr();
    EXPECT(nic.createCq(c, &cqn) == Status::kOk);
    QpConfig q;
    q.sqAddr = sq.addr();
    q.logSqBbs = logSq;
    q.dbrecAddr = sqDbrec.addr();
    q.cqn = cqn;
    EXPECT(nic.createQp(q, &qpn) == Status::kOk);
    wire.attach(id, &nic);
    qp.sq = sq.p();
    qp.logSqBbs = logSq;
    qp.qpn = qpn;
    qp.sqDbrec = reinterpret_cast<uint32_t*>(sqDbrec.p());
    qp.bf = &blueFlame;
    qp.cq = cq.p();
    qp.logCqSize = logCq;
    qp.cqDbrec = reinterpret_cast<uint32_t*>(cqDbrec.p());
  }

  LlMlx5Local local(const Block& b, size_t offset = 0) {
    return {b.addr() + offset, reg(b, kAccessLocalWrite).lkey};
  }
  MemoryKeys reg(const Block& b, uint32_t access) {
    MemoryKeys k;
    EXPECT(nic.pd().registerRegion(b.addr(), b.size(), access, &k) == Status::kOk);
    return k;
  }
  Qp& modelQp() { return *nic.qp(qpn); }

  HostMemory mem;
  NicModel nic;
  Block sq, sqDbrec, cq, cqDbrec;
  uint64_t blueFlame = 0;
  uint32_t cqn = 0, qpn = 0;
  LlIbgdaQp qp{};
};

void bringUp(Rank& r, PeerId peer, uint32_t remoteQpn) {
  RemoteQp remote{peer, remoteQpn};
  for (QpState s : {QpState::kInit, QpState::kRtr, QpState::kRts})
    EXPECT(r.nic.modifyQp(r.qpn, s, &remote) == Status::kOk);
}

// Rank a posts, rank b holds the targets; both QPs in RTS.
struct Pair {
  explicit Pair(uint32_t logSq = 6, uint32_t logCq = 6) : a(wire, 0, logSq, logCq), b(wire, 1, logSq, logCq) {
    bringUp(a, 1, b.qpn);
    bringUp(b, 0, a.qpn);
  }
  LoopbackWire wire;
  Rank a, b;
};

// The NIC's side of the doorbell: polls rank a's doorbell record and executes the WQEs it announces. A
// refused ring (producer more than a ring ahead of the device) would be an overrun by the poster.
class DoorbellPoller {
 public:
  explicit DoorbellPoller(Rank& r, bool paused = false) : paused_(paused), thread_([this, &r] { run(r); }) {}
  ~DoorbellPoller() {
    stop_ = true;
    thread_.join();
  }
  void resume() { paused_ = false; }
  int refused() const { return refused_; }

 private:
  void run(Rank& r) {
    while (!stop_) {
      if (!paused_ && r.nic.pollSqDoorbell(r.qpn) != Status::kOk) refused_++;
      std::this_thread::yield();
    }
  }
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_;
  std::atomic<int> refused_{0};
  std::thread thread_;  // last: starts once the flags exist
};

void fill(Block& b, uint8_t seed) {
  for (size_t i = 0; i < b.size(); i++) b.p()[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

bool allBytes(const uint8_t* p, size_t n, uint8_t v) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != v) return false;
  return true;
}

// Everything published has completed, every completion was polled, and nothing went wrong.
void expectDrained(Rank& r, const DoorbellPoller& poller) {
  EXPECT_EQ(r.qp.consumed, r.qp.readyHead);
  EXPECT_EQ(r.qp.readyHead, r.qp.resvHead);
  EXPECT_EQ(r.modelQp().consumerIndex(), (uint16_t)r.qp.readyHead);
  EXPECT_EQ(r.modelQp().stats().failed, (uint64_t)0);
  EXPECT_EQ(r.qp.errSyndrome, 0u);
  EXPECT_EQ(poller.refused(), 0);
  EXPECT(!r.nic.cq(r.cqn)->overrun());
}

void sleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

// ---- cases ---------------------------------------------------------------------------------------------

// A WQE asks for a CQE exactly when it covers the last WQEBB of a quarter ring (16 WQEBBs: quarters of 4).
LL_TEST(completion_flags_at_quarter_ends) {
  LlIbgdaQp qp{};
  qp.logSqBbs = 4;
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 0, 1), 0);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 2, 1), 0);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 3, 1), kLlMlx5CtrlCqUpdate);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 2, 2), kLlMlx5CtrlCqUpdate);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 3, 2), kLlMlx5CtrlCqUpdate);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 4, 1), 0);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, 15, 2), kLlMlx5CtrlCqUpdate);
  EXPECT_EQ(llIbgdaCompletionFlags(&qp, (1ull << 40) + 7, 1), kLlMlx5CtrlCqUpdate);
  int signaled = 0;
  for (uint64_t i = 0; i < 64; i++) signaled += llIbgdaCompletionFlags(&qp, i, 1) != 0;
  EXPECT_EQ(signaled, 16);
}

// A publish leaves the new producer counter in dbrec[1] (be32) and the WQE's first 8 bytes in BlueFlame.
LL_TEST(publish_writes_dbrec_and_blueflame) {
  Pair p;
  DoorbellPoller poller(p.a, true);
  Block src(64), dst(64);
  const MemoryKeys r = p.b.reg(dst, kRw);
  EXPECT_EQ(llIbgdaPostWrite(&p.a.qp, p.a.local(src), 8, {dst.addr(), r.rkey}), (uint64_t)0);
  EXPECT_EQ(llIbgdaPostWrite(&p.a.qp, p.a.local(src), 8, {dst.addr(), r.rkey}), (uint64_t)1);
  const uint8_t* dbrec = p.a.sqDbrec.p() + 4 * kLlMlx5SqDbrIndex;
  EXPECT(dbrec[0] == 0 && dbrec[1] == 0 && dbrec[2] == 0 && dbrec[3] == 2);
  uint8_t bf[8];
  std::memcpy(bf, &p.a.blueFlame, 8);
  // opmod 0, wqe_index be16 1, opcode RDMA write, qpn be24, ds 3.
  EXPECT(bf[0] == 0 && bf[1] == 0 && bf[2] == 1 && bf[3] == kLlMlx5OpRdmaWrite);
  EXPECT_EQ((uint32_t)(bf[4] << 16 | bf[5] << 8 | bf[6]), p.a.qpn);
  EXPECT_EQ((int)bf[7], 3);
  EXPECT_EQ(p.a.qp.readyHead, (uint64_t)2);
  poller.resume();
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  expectDrained(p.a, poller);
}

// RDMA writes of sizes from 1 byte to 64 KiB + 5 land exactly, not one byte more.
LL_TEST(write_sizes_land_exactly) {
  Pair p;
  DoorbellPoller poller(p.a);
  const uint32_t sizes[] = {1, 3, 16, 63, 64, 100, 1000, 4096, 65541};
  Block src(70000), dst(80000);
  fill(src, 3);
  std::memset(dst.p(), 0xee, dst.size());
  const MemoryKeys r = p.b.reg(dst, kRw);
  const LlMlx5Local l = p.a.local(src);
  uint64_t at = 0;
  for (uint32_t n : sizes) {
    llIbgdaPostWrite(&p.a.qp, {l.addr + n % 13, l.lkey}, n, {dst.addr() + at, r.rkey});
    at += n + 9;
  }
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  at = 0;
  for (uint32_t n : sizes) {
    EXPECT_MSG(std::memcmp(dst.p() + at, src.p() + n % 13, n) == 0, "write of %u bytes", n);
    EXPECT(allBytes(dst.p() + at + n, 9, 0xee));
    at += n + 9;
  }
  EXPECT(allBytes(dst.p() + at, dst.size() - at, 0xee));
  expectDrained(p.a, poller);
}

// Inline writes of 4 and 8 bytes (1 WQEBB), up to 28 (1 WQEBB), 29..92 (2 WQEBBs).
LL_TEST(inline_writes_one_and_two_wqebbs) {
  Pair p;
  DoorbellPoller poller(p.a);
  Block dst(1024);
  std::memset(dst.p(), 0xee, dst.size());
  const MemoryKeys r = p.b.reg(dst, kRw);
  const uint32_t sizes[] = {4, 8, 28, 29, 60, kLlMlx5MaxInlineBytes};
  const uint64_t bbs[] = {1, 1, 1, 2, 2, 2};
  uint8_t payload[6][kLlMlx5MaxInlineBytes];
  uint64_t at = 0;
  for (int k = 0; k < 6; k++) {
    for (uint32_t i = 0; i < sizes[k]; i++) payload[k][i] = (uint8_t)(k * 40 + i * 3 + 1);
    const uint64_t before = p.a.qp.readyHead;
    llIbgdaPostWriteInline(&p.a.qp, payload[k], sizes[k], {dst.addr() + at, r.rkey});
    EXPECT_EQ(p.a.qp.readyHead - before, bbs[k]);
    at += sizes[k] + 4;
  }
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  at = 0;
  for (int k = 0; k < 6; k++) {
    EXPECT_MSG(std::memcmp(dst.p() + at, payload[k], sizes[k]) == 0, "inline write of %u bytes", sizes[k]);
    EXPECT(allBytes(dst.p() + at + sizes[k], 4, 0xee));
    at += sizes[k] + 4;
  }
  expectDrained(p.a, poller);
}

// In an 8-WQEBB ring, 2-WQEBB inline writes placed at the last slot continue at slot 0, three passes over.
LL_TEST(inline_write_spans_ring_end) {
  Pair p(3, 3);
  DoorbellPoller poller(p.a);
  Block dst(1024);
  const MemoryKeys r = p.b.reg(dst, kRw);
  uint8_t payload[kLlMlx5MaxInlineBytes];
  for (int pass = 0; pass < 3; pass++) {
    const uint32_t filler = 0xabc00000u + pass;
    while (p.a.qp.resvHead % 8 != 7) llIbgdaPostWriteInline(&p.a.qp, &filler, 4, {dst.addr() + 1000, r.rkey});
    for (uint32_t i = 0; i < sizeof(payload); i++) payload[i] = (uint8_t)(pass * 50 + i);
    const uint64_t first = llIbgdaPostWriteInline(&p.a.qp, payload, sizeof(payload),
                                                  {dst.addr() + pass * 100, r.rkey});
    EXPECT_EQ(first % 8, (uint64_t)7);
    EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
    EXPECT(std::memcmp(dst.p() + pass * 100, payload, sizeof(payload)) == 0);
    uint32_t landed;
    std::memcpy(&landed, dst.p() + 1000, 4);
    EXPECT_EQ(landed, filler);
  }
  expectDrained(p.a, poller);
}

// Fetch-add returns each previous value exactly; masked fetch-adds (32 and 64 bits) leave the per-field sum.
LL_TEST(fetch_add_and_masked_fetch_add_exact) {
  Pair p;
  DoorbellPoller poller(p.a);
  Block target(64), results(64 * 8);
  const MemoryKeys t = p.b.reg(target, kAll);
  const LlMlx5Local res = p.a.local(results);
  uint64_t start = 0xfffffffffffffff0ull;
  std::memcpy(target.p(), &start, 8);
  const uint64_t adds[] = {1, 0x10, 0x1234567890ull, 0xffffffffffffffffull, 7};
  for (int i = 0; i < 5; i++)
    llIbgdaPostFetchAdd64(&p.a.qp, adds[i], {res.addr + 8 * i, res.lkey}, {target.addr(), t.rkey});
  const uint32_t old32 = 0x01ff80fe;
  const uint64_t old64 = 0x00000005ffffffffull;
  std::memcpy(target.p() + 16, &old32, 4);
  std::memcpy(target.p() + 24, &old64, 8);
  llIbgdaPostMaskedFetchAdd32(&p.a.qp, 0x01018081u, 0x80808080u, {res.addr + 64, res.lkey},
                              {target.addr() + 16, t.rkey});
  llIbgdaPostMaskedFetchAdd64(&p.a.qp, 0x0000000100000001ull, 0x8000000080000000ull,
                              {res.addr + 128, res.lkey}, {target.addr() + 24, t.rkey});
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  uint64_t expect = start;
  for (int i = 0; i < 5; i++) {
    uint64_t old;
    std::memcpy(&old, results.p() + 8 * i, 8);
    EXPECT_EQ(old, expect);
    expect += adds[i];
  }
  uint64_t now64, got64;
  uint32_t now32, got32;
  std::memcpy(&now64, target.p(), 8);
  EXPECT_EQ(now64, expect);
  std::memcpy(&got32, results.p() + 64, 4);
  std::memcpy(&now32, target.p() + 16, 4);
  EXPECT_EQ(got32, old32);
  EXPECT_EQ(now32, llMlx5MaskedAdd32(old32, 0x01018081u, 0x80808080u));
  EXPECT_EQ(now32, 0x0200007fu);  // per-byte sums, each byte's carry dropped
  std::memcpy(&got64, results.p() + 128, 8);
  std::memcpy(&now64, target.p() + 24, 8);
  EXPECT_EQ(got64, old64);
  EXPECT_EQ(now64, 0x0000000600000000ull);
  expectDrained(p.a, poller);
}

// 8 threads post concurrently to one QP, each a stream of (RDMA write of a chunk, inline flag = iteration+1).
// A reader at the target that sees a thread's flag at f must find that thread's first f chunks in place (RC
// order survives the shared ring), and the device must find every WQE intact at its counter (a misplaced or
// torn WQE fails with LOCAL_QP_OP_ERR in the model).
LL_TEST(eight_threads_post_in_order) {
  Pair p(6, 6);
  DoorbellPoller poller(p.a);
  constexpr int kThreads = 8, kIters = 300, kChunk = 128;
  Block src(kThreads * kIters * kChunk), dst(kThreads * kIters * kChunk), flags(64 * kThreads);
  for (int t = 0; t < kThreads; t++)
    for (int i = 0; i < kIters; i++) std::memset(src.p() + (t * kIters + i) * kChunk, t * 31 + i + 1, kChunk);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw), f = p.b.reg(flags, kRw);
  std::atomic<int> violations{0};
  std::atomic<int> posted{0};
  std::thread reader([&] {
    int checked[kThreads] = {};
    for (int done = 0; done < kThreads;) {
      done = 0;
      for (int t = 0; t < kThreads; t++) {
        const uint64_t* flag = reinterpret_cast<const uint64_t*>(flags.p() + 64 * t);
        const uint64_t seen = __atomic_load_n(flag, __ATOMIC_ACQUIRE);
        for (; checked[t] < (int)seen; checked[t]++) {
          const int k = t * kIters + checked[t];
          if (!allBytes(dst.p() + k * kChunk, kChunk, (uint8_t)(t * 31 + checked[t] + 1))) violations++;
        }
        done += checked[t] == kIters;
      }
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; t++)
    posters.emplace_back([&, t] {
      for (int i = 0; i < kIters; i++) {
        const uint64_t k = (uint64_t)(t * kIters + i) * kChunk;
        llIbgdaPostWrite(&p.a.qp, {l.addr + k, l.lkey}, kChunk, {dst.addr() + k, r.rkey});
        const uint64_t flag = i + 1;
        llIbgdaPostWriteInline(&p.a.qp, &flag, 8, {flags.addr() + 64 * t, f.rkey});
        posted += 2;
      }
      EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
    });
  for (auto& th : posters) th.join();
  reader.join();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(p.a.modelQp().stats().executed, p.a.qp.readyHead);  // every WQE is one WQEBB here
  EXPECT(p.a.qp.readyHead >= (uint64_t)posted.load());
  expectDrained(p.a, poller);
}

// A 16-WQEBB ring carries 3000 WQEs of 1 and 2 WQEBBs (over 200 passes): the device is never rung more than a
// ring ahead, the CQ never overruns, and every CQE the scheme asked for is polled.
LL_TEST(ring_wraps_with_bounded_outstanding) {
  Pair p(4, 4);
  DoorbellPoller poller(p.a);
  constexpr int kWqes = 3000;
  Block src(64), dst(kWqes * 64), target(64), result(64);
  fill(src, 5);
  const LlMlx5Local l = p.a.local(src), res = p.a.local(result);
  const MemoryKeys r = p.b.reg(dst, kRw), t = p.b.reg(target, kAll);
  uint32_t expectCqes = 0;
  uint8_t payload[40];
  for (int i = 0; i < kWqes; i++) {
    const uint64_t slot = dst.addr() + (uint64_t)i * 64;
    uint64_t first = 0;
    uint32_t bbs = 1;
    switch (i % 3) {
      case 0: first = llIbgdaPostWrite(&p.a.qp, l, 64, {slot, r.rkey}); break;
      case 1:
        std::memset(payload, i & 0xff, sizeof(payload));
        first = llIbgdaPostWriteInline(&p.a.qp, payload, sizeof(payload), {slot, r.rkey});
        bbs = 2;
        break;
      case 2: first = llIbgdaPostFetchAdd64(&p.a.qp, 1, res, {target.addr(), t.rkey}); break;
    }
    expectCqes += llIbgdaCompletionFlags(&p.a.qp, first, bbs) != 0;
    EXPECT(p.a.qp.resvHead - p.a.qp.consumed <= 16);
  }
  const bool lastSignaled = p.a.qp.signaledHead == p.a.qp.readyHead;
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  EXPECT_EQ(p.a.qp.cqConsumer, expectCqes + (lastSignaled ? 0 : 1));
  EXPECT(p.a.qp.readyHead >= 10 * 16);
  EXPECT_EQ(p.a.modelQp().stats().executed, (uint64_t)kWqes + (lastSignaled ? 0 : 1));
  for (int i = 0; i < kWqes; i++) {
    const uint8_t* s = dst.p() + (size_t)i * 64;
    if (i % 3 == 0) EXPECT(std::memcmp(s, src.p(), 64) == 0);
    if (i % 3 == 1) EXPECT(allBytes(s, 40, (uint8_t)(i & 0xff)) && allBytes(s + 40, 24, 0));
    if (i % 3 == 2) EXPECT(allBytes(s, 64, 0));
  }
  uint64_t count;
  std::memcpy(&count, target.p(), 8);
  EXPECT_EQ(count, (uint64_t)kWqes / 3);
  expectDrained(p.a, poller);
}

// With the device stalled, a poster fills the ring exactly and then waits in reserve; it resumes once the
// device runs and the CQ frees slots.
LL_TEST(reserve_waits_for_a_full_ring) {
  Pair p(4, 4);
  DoorbellPoller poller(p.a, true);
  constexpr int kWqes = 48;
  Block src(64), dst(kWqes * 8);
  fill(src, 9);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw);
  std::atomic<bool> finished{false};
  std::thread poster([&] {
    for (int i = 0; i < kWqes; i++)
      llIbgdaPostWrite(&p.a.qp, {l.addr + i, l.lkey}, 8, {dst.addr() + i * 8, r.rkey});
    finished = true;
  });
  sleepMs(50);
  EXPECT(!finished);
  EXPECT_EQ(__atomic_load_n(&p.a.qp.readyHead, __ATOMIC_ACQUIRE), (uint64_t)16);
  EXPECT_EQ(__atomic_load_n(&p.a.qp.resvHead, __ATOMIC_ACQUIRE), (uint64_t)17);
  EXPECT_EQ(p.a.modelQp().consumerIndex(), (uint16_t)0);
  poller.resume();
  poster.join();
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
  for (int i = 0; i < kWqes; i++) EXPECT(std::memcmp(dst.p() + i * 8, src.p() + i, 8) == 0);
  expectDrained(p.a, poller);
}

// A NIC that never answers (its doorbell poller stays paused): with spinTimeoutNs set, the first wait that
// outlives it stalls the QP, and every later wait on it returns at once; quiet reports the stall. Four
// threads post three rings' worth, so reserve, publish and quiet all meet the stall.
LL_TEST(stalled_nic_bounds_every_wait) {
  Pair p(4, 4);  // 16 WQEBBs
  DoorbellPoller poller(p.a, true);
  constexpr uint64_t kTimeoutNs = 50'000'000;
  p.a.qp.spinTimeoutNs = kTimeoutNs;
  Block src(64), dst(64 * 8);
  fill(src, 3);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; t++)
    posters.emplace_back([&] {
      for (int i = 0; i < 12; i++) llIbgdaPostWrite(&p.a.qp, {l.addr, l.lkey}, 8, {dst.addr(), r.rkey});
    });
  for (std::thread& t : posters) t.join();
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), kLlIbgdaSyndStalled);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(__atomic_load_n(&p.a.qp.stalled, __ATOMIC_ACQUIRE), 1u);
  EXPECT_MSG(ms >= kTimeoutNs / 1e6 && ms < 2000, "%.1f ms: one timeout, then no waiting", ms);
  EXPECT_EQ(p.a.modelQp().consumerIndex(), (uint16_t)0);  // the NIC never ran anything
}

// quiet returns only once every published WQE ran; it adds a signaled NOP only when the last WQE had no CQE.
LL_TEST(quiet_waits_for_every_wqe) {
  Pair p;  // 64 WQEBBs: quarters of 16
  DoorbellPoller poller(p.a, true);
  Block src(64), dst(64 * 16);
  fill(src, 1);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw);
  for (int i = 0; i < 5; i++) llIbgdaPostWrite(&p.a.qp, l, 64, {dst.addr() + i * 64, r.rkey});
  std::atomic<bool> quieted{false};
  std::thread quieter([&] {
    EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
    quieted = true;
  });
  sleepMs(30);
  EXPECT(!quieted);
  EXPECT(allBytes(dst.p(), 5 * 64, 0));
  poller.resume();
  quieter.join();
  for (int i = 0; i < 5; i++) EXPECT(std::memcmp(dst.p() + i * 64, src.p(), 64) == 0);
  EXPECT_EQ(p.a.qp.readyHead, (uint64_t)6);  // 5 unsignaled writes + the NOP
  EXPECT_EQ(p.a.qp.cqConsumer, 1u);
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);  // nothing new: no NOP
  EXPECT_EQ(p.a.qp.readyHead, (uint64_t)6);
  for (int i = 6; i < 16; i++) llIbgdaPostWrite(&p.a.qp, l, 64, {dst.addr() + i * 64, r.rkey});
  EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);  // WQE 15 ends the first quarter: it carries the CQE
  EXPECT_EQ(p.a.qp.readyHead, (uint64_t)16);
  EXPECT_EQ(p.a.qp.cqConsumer, 2u);
  expectDrained(p.a, poller);
}

// The pattern of a kernel whose block 0 posts a word after the others' data and quiets only much later:
// per round, four threads post data writes; the last to finish posts a flag (inline) and quiets; thread 0
// posts its own flag after its data (before or after that quiet) and quiets only after a pause. Every
// round's data and both flags land, each quiet returns, and nothing is left on the QP.
LL_TEST(late_quiet_by_one_poster) {
  Pair p(4, 4);  // 16 WQEBBs: rounds wrap the ring many times
  DoorbellPoller poller(p.a);
  constexpr int kThreads = 4, kRounds = 200, kChunk = 64;
  Block src(kThreads * kChunk), dst(kThreads * kChunk), flags(128);
  fill(src, 6);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw), f = p.b.reg(flags, kRw);
  for (uint64_t round = 1; round <= kRounds; round++) {
    std::atomic<int> finished{0};
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; t++)
      posters.emplace_back([&, t] {
        const uint64_t at = (uint64_t)t * kChunk;
        llIbgdaPostWrite(&p.a.qp, {l.addr + at, l.lkey}, kChunk, {dst.addr() + at, r.rkey});
        if (finished.fetch_add(1) == kThreads - 1) {  // the last: its flag, then quiet
          llIbgdaPostWriteInline(&p.a.qp, &round, 8, {flags.addr(), f.rkey});
          EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
        }
        if (t != 0) return;
        if (round % 3 == 0) sleepMs(1);  // thread 0's flag lands before or after the other quiet
        llIbgdaPostWriteInline(&p.a.qp, &round, 8, {flags.addr() + 64, f.rkey});
        if (round % 2 == 0) sleepMs(1);  // "the receive phase"
        EXPECT_EQ(llIbgdaQuiet(&p.a.qp), 0u);
      });
    for (std::thread& th : posters) th.join();
    uint64_t last, own;
    std::memcpy(&last, flags.p(), 8);
    std::memcpy(&own, flags.p() + 64, 8);
    EXPECT_EQ(last, round);
    EXPECT_EQ(own, round);
    EXPECT(std::memcmp(dst.p(), src.p(), dst.size()) == 0);
  }
  expectDrained(p.a, poller);
}

// A write with an unknown rkey: its error CQE (REQ_ERR, REMOTE_ACCESS) comes back from pollCq and quiet,
// naming the WQE; the WQE before it landed; the WQEs after it are flushed, and every slot is still freed.
LL_TEST(bad_rkey_reports_remote_access) {
  Pair p;
  DoorbellPoller poller(p.a);
  Block src(64), dst(64);
  fill(src, 4);
  const LlMlx5Local l = p.a.local(src);
  const MemoryKeys r = p.b.reg(dst, kRw);
  llIbgdaPostWrite(&p.a.qp, l, 16, {dst.addr(), r.rkey});
  EXPECT_EQ(llIbgdaPostWrite(&p.a.qp, l, 16, {dst.addr() + 16, kUnknownKey}), (uint64_t)1);
  llIbgdaPostWrite(&p.a.qp, l, 16, {dst.addr() + 32, r.rkey});
  const uint32_t syndrome = llIbgdaQuiet(&p.a.qp);
  EXPECT_MSG(syndrome == kLlMlx5SyndRemoteAccessErr, "syndrome 0x%x (%s)", syndrome,
             llMlx5SyndromeName((uint8_t)syndrome));
  EXPECT_EQ(p.a.qp.errWqeCounter, 1u);
  EXPECT_EQ(llIbgdaPollCq(&p.a.qp), (uint32_t)kLlMlx5SyndRemoteAccessErr);
  EXPECT(std::memcmp(dst.p(), src.p(), 16) == 0);
  EXPECT(allBytes(dst.p() + 16, 48, 0));
  EXPECT(p.a.modelQp().state() == QpState::kError);
  EXPECT_EQ(p.a.qp.consumed, p.a.qp.readyHead);
  EXPECT_EQ(p.a.qp.cqConsumer, 3u);  // the error, then a flush for each later WQE (the NOP included)
  EXPECT_EQ(poller.refused(), 0);
}

LL_TEST_MAIN()
