// The software mlx5 device across processes: each case forks its ranks, every rank runs a NicModel
// whose SocketWire links it to the others, and the ranks drive their devices the way a GPU will (WQEs
// written byte by byte into the send ring, CQEs read back raw; the PRM facts are restated here as in
// test_nic_model.cc). The parent relays all-gathers between the ranks over pipes, standing in for the
// bootstrap, and fails the case when a rank fails, dies, or outlives the case's deadline.
// Also: MemoryRouter, RegionRoutes, cudaDeviceOf, and CudaMemory (skipped where there is no GPU).
#include <cuda_runtime_api.h>
#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "nic_test_util.h"
#include "transport/ibgda/model/cuda_memory.h"
#include "transport/ibgda/model/nic_model.h"
#include "transport/ibgda/model/socket_wire.h"

using namespace llnic;
using namespace llnictest;

namespace {

using Clock = std::chrono::steady_clock;

bool allBytes(const uint8_t* p, size_t n, uint8_t v) {
  return std::all_of(p, p + n, [v](uint8_t x) { return x == v; });
}

int openFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (d && readdir(d)) n++;
  if (d) closedir(d);
  return n;
}

long msSince(Clock::time_point t) {
  return (long)std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// ---- ranks as processes ----------------------------------------------------------------------------

constexpr int kMaxRanks = 4;
constexpr int kCaseDeadlineMs = 10000;

bool readFull(int fd, void* buf, size_t n) {
  uint8_t* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t got = read(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= (size_t)got;
  }
  return true;
}

bool writeFull(int fd, const void* buf, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t put = write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) return false;
    p += put;
    n -= (size_t)put;
  }
  return true;
}

// A rank's view of its group: all-gathers relayed by the parent. A rank that has exited contributes
// zeros, so the survivors of a crash can still meet.
class Group {
 public:
  Group(int rank, int size, std::string dir, int up, int down)
      : rank_(rank), size_(size), dir_(std::move(dir)), up_(up), down_(down) {}
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& dir() const { return dir_; }

  std::vector<uint8_t> allGather(const void* mine, uint32_t len) {
    std::vector<uint8_t> msg(4 + len), all((size_t)size_ * len);
    std::memcpy(msg.data(), &len, 4);
    std::memcpy(msg.data() + 4, mine, len);
    EXPECT(writeFull(up_, msg.data(), msg.size()) && readFull(down_, all.data(), all.size()));
    return all;
  }
  template <typename T>
  std::vector<T> gather(const T& mine) {
    std::vector<uint8_t> all = allGather(&mine, sizeof(T));
    std::vector<T> out(size_);
    std::memcpy(out.data(), all.data(), all.size());
    return out;
  }
  void barrier() {
    const uint8_t token = 1;  // a round of zero bytes would relay nothing, and so wait for nothing
    allGather(&token, 1);
  }

 private:
  int rank_, size_;
  std::string dir_;
  int up_, down_;
};

struct Child {
  pid_t pid;
  int up, down;  // the parent's ends: the rank's messages, the relayed results
  bool open;
  int status;  // the wait status once reaped, -1 before
};

// Waits for the rank to end, until the deadline. True once it is reaped.
bool reapOne(Child& c, Clock::time_point deadline) {
  while (c.status < 0 && waitpid(c.pid, &c.status, WNOHANG) == 0) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// One round: 1 with the rank's bytes, 0 when the rank closed its pipe, -1 past the deadline.
int readRound(Child& c, Clock::time_point deadline, std::vector<uint8_t>* blob) {
  pollfd p{c.up, POLLIN, 0};
  const long left = -msSince(deadline);
  if (poll(&p, 1, (int)std::max(left, 0L)) <= 0) return -1;
  uint32_t len;
  if (!readFull(c.up, &len, 4)) return 0;
  blob->resize(len);
  return readFull(c.up, blob->data(), len) ? 1 : 0;
}

// Relays all-gathers until every rank has closed its pipe; false past the deadline or on a mismatch.
bool relay(std::vector<Child>& kids, Clock::time_point deadline) {
  for (;;) {
    std::vector<std::vector<uint8_t>> blobs(kids.size());
    size_t len = 0;
    bool anyOpen = false;
    for (size_t r = 0; r < kids.size(); r++) {
      if (!kids[r].open) continue;
      const int got = readRound(kids[r], deadline, &blobs[r]);
      // A rank that closed its pipe is exiting: once reaped, none of its sockets accepts any more.
      if (got < 0 || (got == 0 && !reapOne(kids[r], deadline))) return false;
      kids[r].open = got == 1;
      if (!got) continue;
      if (anyOpen && blobs[r].size() != len) return false;
      len = blobs[r].size();
      anyOpen = true;
    }
    if (!anyOpen) return true;
    std::vector<uint8_t> all;
    for (auto& b : blobs) {
      b.resize(len, 0);
      all.insert(all.end(), b.begin(), b.end());
    }
    for (Child& c : kids)
      if (c.open) writeFull(c.down, all.data(), all.size());  // a rank that just died is seen next round
  }
}

// Waits for every rank until the deadline, then kills the rest (whose status stays -1).
void reapAll(std::vector<Child>& kids, Clock::time_point deadline) {
  for (Child& c : kids) {
    if (!reapOne(c, deadline)) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
    }
    close(c.up);
    close(c.down);
  }
}

[[noreturn]] void runChild(int rank, int n, const std::string& dir, int up, int down,
                           const std::function<void(Group&)>& body) {
  int code = 0;
  try {
    Group g(rank, n, dir, up, down);
    body(g);
  } catch (const lltest::Failure& f) {
    std::printf("rank %d: %s\n", rank, f.what.c_str());
    code = 1;
  }
  std::fflush(stdout);
  _exit(code);  // the parent's state (harness, atexit handlers) is not this process's to tear down
}

// Lists what the ranks left in the job directory, then removes it all.
std::vector<std::string> cleanUp(const std::string& dir) {
  std::vector<std::string> left;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) left.push_back(e->d_name);
    closedir(d);
  }
  for (const std::string& f : left) unlink((dir + "/" + f).c_str());
  rmdir(dir.c_str());
  return left;
}

// Runs `body` as ranks 0..n-1, each in its own process, in a job directory of its own. Returns the
// files the ranks left behind in that directory.
std::vector<std::string> runRanks(int n, const std::function<void(Group&)>& body) {
  static int serial = 0;
  const std::string dir =
      SocketWire::jobDir("test-" + std::to_string(getpid()) + "-" + std::to_string(serial++));
  signal(SIGPIPE, SIG_IGN);  // relaying to a rank that just died must not end the parent
  std::fflush(stdout);
  std::vector<Child> kids;
  for (int r = 0; r < n; r++) {
    int up[2], down[2];
    EXPECT(pipe(up) == 0 && pipe(down) == 0);
    const pid_t pid = fork();
    EXPECT(pid >= 0);
    if (pid == 0) {
      for (Child& c : kids) close(c.up), close(c.down);
      close(up[0]);
      close(down[1]);
      runChild(r, n, dir, up[1], down[0], body);
    }
    close(up[1]);
    close(down[0]);
    kids.push_back(Child{pid, up[0], down[1], true, -1});
  }
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kCaseDeadlineMs);
  const bool relayed = relay(kids, deadline);
  reapAll(kids, relayed ? deadline : Clock::now());
  std::vector<std::string> left = cleanUp(dir);
  EXPECT_MSG(relayed, "the ranks did not finish within %d ms, or disagreed on a round", kCaseDeadlineMs);
  for (int r = 0; r < n; r++) {
    const int st = kids[r].status;
    EXPECT_MSG(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "rank %d ended with wait status %d", r, st);
  }
  return left;
}

// ---- one rank's device -----------------------------------------------------------------------------

constexpr uint32_t kLogSq = 6, kLogCq = 6;
constexpr size_t kTargetBytes = 4u << 20, kLocalBytes = 4u << 20;
constexpr uint32_t kAll = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead | kAccessRemoteAtomic;
constexpr uint32_t kUnknownKey = 0x00fedc5a;  // registered nowhere

// What a rank tells the others: where its target region is, and its QP towards each rank.
struct Info {
  uint64_t target;
  uint32_t rkey;
  uint32_t qpnFor[kMaxRanks];
};

struct Cqe {
  uint8_t opcode, syndrome;
  uint16_t wqeCounter;
};

// A model device with one CQ, one RC QP towards every other rank, a target region for the others'
// operations (all rights) and a local region (sources and atomic results).
class Node {
 public:
  Node(PeerId rank, int size, const std::string& dir, int timeoutMs = 2000, Memory* memory = nullptr)
      : rank_(rank),
        size_(size),
        wire_(SocketWireOptions{dir, rank, timeoutMs}),
        nic_(memory ? *memory : host_, wire_),
        target(kTargetBytes),
        local(kLocalBytes) {
    EXPECT_MSG(wire_.start(nic_), "%s", wire_.error().c_str());
    for (size_t i = 0; i < (1u << kLogCq); i++) cq_.p()[i * 64 + kCqeOpOwn] = kCqeInvalid << 4;
    EXPECT(nic_.createCq(CqConfig{cq_.addr(), kLogCq, cqDbrec_.addr(), false}, &cqn_) == Status::kOk);
    for (int p = 0; p < size; p++) {
      sqs_.push_back(std::make_unique<Sq>());
      if (p != rank)
        EXPECT(nic_.createQp(QpConfig{sqs_[p]->ring.addr(), kLogSq, sqs_[p]->dbrec.addr(), cqn_},
                             &sqs_[p]->qpn) == Status::kOk);
    }
    useTarget(target.addr(), target.size());
    EXPECT(nic_.pd().registerRegion(local.addr(), local.size(), kAccessLocalWrite, &localKeys_) ==
           Status::kOk);
  }

  // The responder thread writes into this rank's regions until the wire stops: stop it first.
  ~Node() { wire_.stop(); }

  // Offers [addr, addr + len) to the others in place of `target` (device memory, in the GPU case).
  void useTarget(uint64_t addr, uint64_t len) {
    info_.target = addr;
    MemoryKeys k;
    EXPECT(nic_.pd().registerRegion(addr, len, kAll, &k) == Status::kOk);
    info_.rkey = k.rkey;
    for (int p = 0; p < size_; p++) info_.qpnFor[p] = sqs_[p]->qpn;
  }
  const Info& info() const { return info_; }
  const Info& peer(int p) const { return peers_[p]; }
  QpState state(int peer) { return nic_.qp(sqs_[peer]->qpn)->state(); }

  // Every QP to RTS, connected to the peer's QP towards this rank.
  void connect(const std::vector<Info>& all) {
    peers_ = all;
    for (int p = 0; p < size_; p++)
      if (p != rank_) bringUp(p, all[p].qpnFor[rank_]);
  }
  // After an error: back to RST (the device's counters restart at 0), then up again to `remoteQpn`.
  void reconnect(int peer, uint32_t remoteQpn) {
    EXPECT(nic_.modifyQp(sqs_[peer]->qpn, QpState::kReset) == Status::kOk);
    sqs_[peer]->producer = 0;
    bringUp(peer, remoteQpn);
  }

  // WQEs of one WQEBB: ctrl, raddr, then a data segment or atomic operands and a data segment.
  std::vector<uint8_t> writeWqe(int peer, uint64_t raddr, uint32_t rkey, uint32_t len, uint64_t laddr,
                                uint8_t flags = kCqUpdate) {
    std::vector<uint8_t> w = ctrl(peer, kOpWrite, 0, flags, 3, raddr, rkey);
    dataSeg(&w[32], len, laddr);
    return w;
  }
  std::vector<uint8_t> fetchAddWqe(int peer, uint64_t raddr, uint32_t rkey, uint64_t add, uint64_t result) {
    std::vector<uint8_t> w = ctrl(peer, kOpFetchAdd, 0, kCqUpdate, 4, raddr, rkey);
    putBe64(&w[32], add);
    dataSeg(&w[48], 8, result);
    return w;
  }
  std::vector<uint8_t> maskedFaWqe(int peer, bool wide, uint64_t raddr, uint32_t rkey, uint64_t add,
                                   uint64_t boundary, uint64_t result) {
    std::vector<uint8_t> w = ctrl(peer, kOpMaskedFa, wide ? kExt8 : kExt4, kCqUpdate, 4, raddr, rkey);
    if (wide) {
      putBe64(&w[32], add);
      putBe64(&w[40], boundary);
    } else {
      putBe32(&w[32], (uint32_t)add);
      putBe32(&w[36], (uint32_t)boundary);
    }
    dataSeg(&w[48], wide ? 8 : 4, result);
    return w;
  }

  // Copies the WQE into the peer's send ring and advances the producer counter.
  void post(int peer, const std::vector<uint8_t>& wqe) {
    Sq& s = *sqs_[peer];
    std::memcpy(s.ring.p() + (s.producer & ((1u << kLogSq) - 1)) * 64, wqe.data(), 64);
    s.producer++;
  }
  // Publishes the producer counter in dbrec[1]; the device executes everything up to it meanwhile.
  void ring(int peer) {
    putBe32(sqs_[peer]->dbrec.p() + 4, sqs_[peer]->producer);
    EXPECT(nic_.pollSqDoorbell(sqs_[peer]->qpn) == Status::kOk);
  }
  bool poll(Cqe* out) {
    const uint8_t* c = cq_.p() + (cqConsumer_ & ((1u << kLogCq) - 1)) * 64;
    const uint8_t opOwn = __atomic_load_n(&c[kCqeOpOwn], __ATOMIC_ACQUIRE);
    if ((opOwn >> 4) == kCqeInvalid || (opOwn & 1) != ((cqConsumer_ >> kLogCq) & 1)) return false;
    *out = Cqe{(uint8_t)(opOwn >> 4), c[kCqeSyndrome], getBe16(c + kCqeCounter)};
    cqConsumer_++;
    putBe32(cqDbrec_.p(), cqConsumer_ & 0xffffff);
    return true;
  }
  // Posts one signaled WQE, rings, and returns its CQE (the model has written it when ring returns).
  Cqe run(int peer, const std::vector<uint8_t>& wqe) {
    const uint16_t index = sqs_[peer]->producer;
    post(peer, wqe);
    ring(peer);
    Cqe c;
    EXPECT(poll(&c));
    EXPECT_EQ(c.wqeCounter, index);
    return c;
  }

 private:
  struct Sq {
    Block ring{64u << kLogSq}, dbrec{64};
    uint32_t qpn = 0;
    uint16_t producer = 0;
  };

  void bringUp(int peer, uint32_t remoteQpn) {
    const RemoteQp remote{peer, remoteQpn};
    for (QpState s : {QpState::kInit, QpState::kRtr, QpState::kRts})
      EXPECT(nic_.modifyQp(sqs_[peer]->qpn, s, &remote) == Status::kOk);
  }
  // ctrl: opmod | wqe_index | opcode, qpn | DS, fm_ce_se; raddr: be64 address, be32 rkey.
  std::vector<uint8_t> ctrl(int peer, uint8_t opcode, uint8_t opmod, uint8_t flags, uint8_t ds,
                            uint64_t raddr, uint32_t rkey) {
    std::vector<uint8_t> w(64, 0);
    putBe32(&w[0], (uint32_t)opmod << 24 | (uint32_t)sqs_[peer]->producer << 8 | opcode);
    putBe32(&w[4], sqs_[peer]->qpn << 8 | ds);
    w[11] = flags;
    putBe64(&w[16], raddr);
    putBe32(&w[24], rkey);
    return w;
  }
  void dataSeg(uint8_t* p, uint32_t len, uint64_t addr) {  // be32 byte_count, be32 lkey, be64 addr
    putBe32(p, len);
    putBe32(p + 4, localKeys_.lkey);
    putBe64(p + 8, addr);
  }

  const PeerId rank_;
  const int size_;
  HostMemory host_;
  SocketWire wire_;
  NicModel nic_;
  Block cq_{64u << kLogCq}, cqDbrec_{64};
  uint32_t cqn_ = 0;
  uint32_t cqConsumer_ = 0;
  std::vector<std::unique_ptr<Sq>> sqs_;
  MemoryKeys localKeys_;
  Info info_{};
  std::vector<Info> peers_;

 public:
  Block target, local;
};

// Connects every rank's QPs; the closing barrier means every QP is ready before anyone sends.
void connectAll(Node& n, Group& g) {
  n.connect(g.gather(n.info()));
  g.barrier();
}

void expectOk(const Cqe& c) {
  EXPECT_MSG(c.opcode == kCqeReq, "CQE opcode 0x%x, syndrome 0x%x", c.opcode, c.syndrome);
}

void expectErr(const Cqe& c, uint8_t syndrome) {
  EXPECT_EQ((int)c.opcode, (int)kCqeReqErr);
  EXPECT_MSG(c.syndrome == syndrome, "syndrome 0x%x, expected 0x%x", c.syndrome, syndrome);
}

uint8_t pattern(int from, int to, size_t i) { return (uint8_t)(from * 31 + to * 7 + i * 13 + 1); }

// Rank r fills local[0, len) with the bytes it sends to rank `to`.
void fillFor(Node& n, int from, int to, size_t len) {
  for (size_t i = 0; i < len; i++) n.local.p()[i] = pattern(from, to, i);
}

bool holds(const uint8_t* p, int from, int to, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (p[i] != pattern(from, to, i)) return false;
  return true;
}

// Counts the accesses that reach it, for the router's dispatch.
class CountingMemory final : public Memory {
 public:
  void read(uint64_t addr, void* dst, size_t len) override { bytes += len, host.read(addr, dst, len); }
  void write(uint64_t addr, const void* src, size_t len) override {
    bytes += len, host.write(addr, src, len);
  }
  uint32_t loadAcquire32(uint64_t addr) override { return ops++, host.loadAcquire32(addr); }
  void storeRelease32(uint64_t addr, uint32_t v) override { ops++, host.storeRelease32(addr, v); }
  uint64_t fetchAdd64(uint64_t addr, uint64_t add) override { return ops++, host.fetchAdd64(addr, add); }
  uint32_t compareSwap32(uint64_t addr, uint32_t e, uint32_t d) override {
    return ops++, host.compareSwap32(addr, e, d);
  }
  uint64_t compareSwap64(uint64_t addr, uint64_t e, uint64_t d) override {
    return ops++, host.compareSwap64(addr, e, d);
  }
  size_t bytes = 0, ops = 0;

 private:
  HostMemory host;
};

// Whether this process may use a GPU. Asking initialises CUDA, so the cases that do come last: the
// forking cases before them must not inherit an initialised runtime in their children.
bool haveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

}  // namespace

// ---- cases -----------------------------------------------------------------------------------------

// Both ranks write to each other at once: 1000 bytes land at offset 17 and not one byte elsewhere.
LL_TEST(write_lands_exactly_in_peer) {
  runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir());
    connectAll(n, g);
    const int peer = 1 - g.rank();
    fillFor(n, g.rank(), peer, 1000);
    expectOk(
        n.run(peer, n.writeWqe(peer, n.peer(peer).target + 17, n.peer(peer).rkey, 1000, n.local.addr())));
    g.barrier();
    EXPECT(allBytes(n.target.p(), 17, 0));
    EXPECT(holds(n.target.p() + 17, peer, g.rank(), 1000));
    EXPECT(allBytes(n.target.p() + 1017, 4096, 0));
    g.barrier();
  });
}

// Four ranks, every rank writes its own slot in every other rank.
LL_TEST(all_to_all_four_ranks) {
  constexpr size_t kSlot = 256;
  runRanks(4, [](Group& g) {
    Node n(g.rank(), 4, g.dir());
    connectAll(n, g);
    for (int p = 0; p < 4; p++) {
      if (p == g.rank()) continue;
      fillFor(n, g.rank(), p, kSlot);
      const Info& to = n.peer(p);
      expectOk(n.run(p, n.writeWqe(p, to.target + g.rank() * kSlot, to.rkey, kSlot, n.local.addr())));
    }
    g.barrier();
    for (int p = 0; p < 4; p++)
      EXPECT(p == g.rank() ? allBytes(n.target.p() + p * kSlot, kSlot, 0)
                           : holds(n.target.p() + p * kSlot, p, g.rank(), kSlot));
    g.barrier();
  });
}

// One 4 MiB write: far more than a socket buffer, so both ends go through partial sends and receives.
LL_TEST(large_write_partial_io) {
  runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir());
    connectAll(n, g);
    if (g.rank() == 0) {
      fillFor(n, 0, 1, kLocalBytes);
      expectOk(
          n.run(1, n.writeWqe(1, n.peer(1).target, n.peer(1).rkey, (uint32_t)kLocalBytes, n.local.addr())));
    }
    g.barrier();
    if (g.rank() == 1) EXPECT(holds(n.target.p(), 0, 1, kLocalBytes));
    g.barrier();
  });
}

// Ranks 1-3 each add 1 to their own 16-bit field of one counter in rank 0, 300 times. Every old value
// that comes back shows exactly the sender's earlier adds in its field, and the sum is exact.
LL_TEST(fetch_add_three_senders_exact_sum) {
  constexpr int kAdds = 300;
  runRanks(4, [](Group& g) {
    Node n(g.rank(), 4, g.dir());
    connectAll(n, g);
    const int r = g.rank();
    if (r > 0) {
      const uint64_t unit = 1ull << (16 * (r - 1));
      for (int i = 0; i < kAdds; i++) {
        expectOk(n.run(0, n.fetchAddWqe(0, n.peer(0).target, n.peer(0).rkey, unit, n.local.addr())));
        uint64_t old;
        std::memcpy(&old, n.local.p(), 8);
        EXPECT_EQ((old >> (16 * (r - 1))) & 0xffff, (uint64_t)i);
      }
    }
    g.barrier();
    if (r == 0) {
      uint64_t sum;
      std::memcpy(&sum, n.target.p(), 8);
      EXPECT_EQ(sum, (uint64_t)kAdds * (1 + (1ull << 16) + (1ull << 32)));
    }
    g.barrier();
  });
}

// Two senders add to two-field words in rank 0 (32-bit: 16-bit fields; 64-bit: 32-bit fields). The
// low fields start near their top and wrap without carrying into the high fields.
LL_TEST(masked_fetch_add_across_processes) {
  constexpr int kAdds = 20;
  runRanks(3, [](Group& g) {
    Node n(g.rank(), 3, g.dir());
    const uint32_t start32 = 0x0000fff0;
    const uint64_t start64 = 0x00000000fffffff0ull;
    std::memcpy(n.target.p(), &start32, 4);
    std::memcpy(n.target.p() + 8, &start64, 8);
    connectAll(n, g);
    if (g.rank() > 0) {
      const Info& t = n.peer(0);
      for (int i = 0; i < kAdds; i++) {
        expectOk(n.run(0, n.maskedFaWqe(0, false, t.target, t.rkey, 0x00010001, 0x80008000, n.local.addr())));
        expectOk(n.run(0, n.maskedFaWqe(0, true, t.target + 8, t.rkey, 0x0000000100000001ull,
                                        0x8000000080000000ull, n.local.addr() + 8)));
      }
    }
    g.barrier();
    if (g.rank() == 0) {
      uint32_t v32;
      uint64_t v64;
      std::memcpy(&v32, n.target.p(), 4);
      std::memcpy(&v64, n.target.p() + 8, 8);
      EXPECT_EQ(v32, 0x00280018u);               // a plain add would give 0x00290018
      EXPECT_EQ(v64, 0x0000002800000018ull);     // a plain add would give 0x0000002900000018
      EXPECT(allBytes(n.target.p() + 4, 4, 0));  // the 4-byte operation wrote 4 bytes
    }
    g.barrier();
  });
}

// RC order across processes: every data write is followed on the same QP by a fetch-add on a flag.
// A thread of the target rank that sees the flag at f must see the data of all f writes.
LL_TEST(rc_order_write_then_flag) {
  constexpr int kWrites = 256;
  constexpr size_t kBytes = 512, kFlag = 2u << 20;
  runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir());
    connectAll(n, g);
    if (g.rank() == 0) {
      const Info& t = n.peer(1);
      for (int i = 0; i < kWrites; i++) {
        std::memset(n.local.p() + i * kBytes, i + 1, kBytes);
        n.post(1, n.writeWqe(1, t.target + i * kBytes, t.rkey, kBytes, n.local.addr() + i * kBytes, 0));
        expectOk(n.run(1, n.fetchAddWqe(1, t.target + kFlag, t.rkey, 1, n.local.addr() + kLocalBytes - 8)));
      }
    } else {
      const uint64_t* flag = reinterpret_cast<const uint64_t*>(n.target.p() + kFlag);
      const Clock::time_point start = Clock::now();
      int checked = 0, violations = 0;
      while (checked < kWrites && msSince(start) < 5000) {
        const int seen = (int)__atomic_load_n(flag, __ATOMIC_ACQUIRE);
        for (; checked < seen; checked++)
          violations += !allBytes(n.target.p() + checked * kBytes, kBytes, (uint8_t)(checked + 1));
        sched_yield();
      }
      EXPECT_EQ(checked, kWrites);
      EXPECT_EQ(violations, 0);
    }
    g.barrier();
  });
}

// REMOTE_ACCESS_ERR for an unknown rkey and for an address past the region; the target is untouched.
LL_TEST(bad_rkey_remote_access_error) {
  runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir());
    connectAll(n, g);
    if (g.rank() == 0) {
      const Info& t = n.peer(1);
      expectErr(n.run(1, n.writeWqe(1, t.target, kUnknownKey, 64, n.local.addr())), kRemoteAccess);
      EXPECT(n.state(1) == QpState::kError);
      n.reconnect(1, t.qpnFor[0]);
      expectErr(n.run(1, n.fetchAddWqe(1, t.target + kTargetBytes, t.rkey, 1, n.local.addr())),
                kRemoteAccess);
      n.reconnect(1, t.qpnFor[0]);
      expectOk(n.run(1, n.writeWqe(1, t.target, t.rkey, 0, n.local.addr())));  // the link still works
    }
    g.barrier();
    if (g.rank() == 1) EXPECT(allBytes(n.target.p(), n.target.size(), 0));
    g.barrier();
  });
}

// A misaligned atomic is answered with NAK invalid request; a QP number the peer does not have gets
// no answer, which the requester reports as retries exceeded at once (the peer itself is alive).
LL_TEST(remote_invalid_request_and_unknown_qpn) {
  runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir(), 1000);
    connectAll(n, g);
    if (g.rank() == 0) {
      const Info& t = n.peer(1);
      expectErr(n.run(1, n.fetchAddWqe(1, t.target + 4, t.rkey, 1, n.local.addr())), kRemoteInvalReq);
      n.reconnect(1, 0xbad);
      const Clock::time_point start = Clock::now();
      expectErr(n.run(1, n.writeWqe(1, t.target, t.rkey, 8, n.local.addr())), kRetryExceeded);
      EXPECT_MSG(msSince(start) < 500, "took %ld ms", msSince(start));
    }
    g.barrier();
    if (g.rank() == 1) EXPECT(allBytes(n.target.p(), 64, 0));
    g.barrier();
  });
}

constexpr int kShortTimeoutMs = 400;  // for the cases that wait on a peer that is gone

// Rank 1 dies without stopping its wire (its socket file stays). Rank 0's next write fails with
// retries exceeded as soon as the connection breaks; after a reconnect, the connect attempts find the
// stale socket refusing and give up after the timeout. Neither hangs.
LL_TEST(peer_exit_gives_error_cqe) {
  const std::vector<std::string> left = runRanks(2, [](Group& g) {
    Node n(g.rank(), 2, g.dir(), kShortTimeoutMs);
    connectAll(n, g);
    if (g.rank() == 0) expectOk(n.run(1, n.writeWqe(1, n.peer(1).target, n.peer(1).rkey, 8, n.local.addr())));
    g.barrier();
    if (g.rank() == 1) _exit(0);  // a crash: no destructor runs
    g.barrier();                  // completes once rank 1 is reaped: its sockets are closed
    Clock::time_point start = Clock::now();
    expectErr(n.run(1, n.writeWqe(1, n.peer(1).target, n.peer(1).rkey, 8, n.local.addr())), kRetryExceeded);
    EXPECT_MSG(msSince(start) < kShortTimeoutMs + 1000, "took %ld ms", msSince(start));
    n.reconnect(1, n.peer(1).qpnFor[0]);
    start = Clock::now();
    expectErr(n.run(1, n.writeWqe(1, n.peer(1).target, n.peer(1).rkey, 8, n.local.addr())), kRetryExceeded);
    const long took = msSince(start);
    EXPECT_MSG(took >= kShortTimeoutMs - 50 && took < kShortTimeoutMs + 1000, "took %ld ms", took);
  });
  EXPECT(left == std::vector<std::string>{"rank1.sock"});
}

// Rank 1 stops its wire and exits cleanly: rank 0's write fails with retries exceeded, promptly.
LL_TEST(peer_stopped_gives_error_cqe) {
  const std::vector<std::string> left = runRanks(2, [](Group& g) {
    std::unique_ptr<Node> n = std::make_unique<Node>(g.rank(), 2, g.dir(), kShortTimeoutMs);
    connectAll(*n, g);
    if (g.rank() == 0)
      expectOk(n->run(1, n->writeWqe(1, n->peer(1).target, n->peer(1).rkey, 8, n->local.addr())));
    g.barrier();
    if (g.rank() == 1) n.reset();
    g.barrier();
    if (g.rank() == 0) {
      const Clock::time_point start = Clock::now();
      expectErr(n->run(1, n->writeWqe(1, n->peer(1).target, n->peer(1).rkey, 8, n->local.addr())),
                kRetryExceeded);
      EXPECT_MSG(msSince(start) < kShortTimeoutMs + 1000, "took %ld ms", msSince(start));
      EXPECT(n->state(1) == QpState::kError);
    }
  });
  EXPECT(left.empty());
}

// After traffic in every direction, destroying a device closes every descriptor it opened and removes
// its socket file; the job directory is left empty.
LL_TEST(shutdown_leaves_no_socket_files_or_fds) {
  const std::vector<std::string> left = runRanks(4, [](Group& g) {
    const int before = openFds();
    const std::string path = SocketWire::socketPath(g.dir(), g.rank());
    {
      Node n(g.rank(), 4, g.dir());
      connectAll(n, g);
      for (int p = 0; p < 4; p++)
        if (p != g.rank())
          expectOk(n.run(p, n.writeWqe(p, n.peer(p).target, n.peer(p).rkey, 8, n.local.addr())));
      EXPECT(access(path.c_str(), F_OK) == 0);
      EXPECT(openFds() > before);
      g.barrier();
    }
    EXPECT(access(path.c_str(), F_OK) != 0);
    EXPECT_EQ(openFds(), before);
    g.barrier();
  });
  EXPECT_MSG(left.empty(), "%zu files left, e.g. %s", left.size(), left.empty() ? "" : left[0].c_str());
}

// Addresses in a registered range reach its memory, all others the fallback; accesses that straddle
// a range edge are split there. Overlapping ranges are refused.
LL_TEST(memory_router_dispatch) {
  CountingMemory fallback, device;
  MemoryRouter router(fallback);
  Block b(4096);
  const uint64_t base = b.addr();
  EXPECT(router.add(base + 1024, 1024, device) == Status::kOk);
  EXPECT(router.add(base + 2000, 100, device) == Status::kInvalidArgument);
  EXPECT(router.add(base + 1000, 30, device) == Status::kInvalidArgument);
  EXPECT(router.add(base, 0, device) == Status::kInvalidArgument);
  uint8_t buf[512];
  std::memset(buf, 0xab, sizeof(buf));
  router.write(base + 1024 - 100, buf, 300);  // 100 bytes to the fallback, 200 to the range
  EXPECT_EQ(fallback.bytes, (size_t)100);
  EXPECT_EQ(device.bytes, (size_t)200);
  EXPECT(allBytes(b.p() + 924, 300, 0xab) && allBytes(b.p() + 1224, 100, 0));
  router.read(base + 2048 - 8, buf, 16);  // 8 from the range, 8 from the fallback after it
  EXPECT_EQ(device.bytes, (size_t)208);
  EXPECT_EQ(fallback.bytes, (size_t)108);
  EXPECT_EQ(router.fetchAdd64(base + 1024 + 512, 5), (uint64_t)0);
  EXPECT_EQ(router.compareSwap32(base + 64, 0, 7), 0u);
  router.storeRelease32(base + 1024 + 128, 9);
  EXPECT_EQ(router.loadAcquire32(base + 1024 + 128), 9u);
  EXPECT_EQ(device.ops, (size_t)3);
  EXPECT_EQ(fallback.ops, (size_t)1);
  EXPECT(router.remove(base + 1024) == Status::kOk && router.remove(base + 1024) == Status::kNotFound);
  router.fetchAdd64(base + 1024 + 512, 1);
  EXPECT_EQ(fallback.ops, (size_t)2);
}

// Registrations that overlap share the router's ranges: each adds only what no range covers yet and holds
// every range it touches, and a range stays while any holder is registered. A region over a range of
// another memory is refused and changes nothing.
LL_TEST(region_routes_share_overlaps) {
  CountingMemory fallback, device, other;
  RegionRoutes routes(fallback);
  Block b(8192);
  const uint64_t base = b.addr();
  uint8_t buf[8192];
  // Reads the whole block; returns how many of its bytes reached `device`.
  auto deviceBytes = [&] {
    const size_t before = device.bytes;
    routes.memory().read(base, buf, sizeof(buf));
    return device.bytes - before;
  };
  uint64_t umem = 0, mr = 0, again = 0, refused = 0;
  EXPECT(routes.hold(base + 1024, 2048, device, &umem) == Status::kOk);
  EXPECT(routes.hold(base + 2048, 2048, device, &mr) == Status::kOk);  // adds [3072, 4096) only
  EXPECT(routes.hold(base + 1024, 2048, device, &again) == Status::kOk);
  EXPECT(routes.hold(base + 4000, 200, other, &refused) == Status::kInvalidArgument);
  EXPECT(routes.hold(base, 0, device, &refused) == Status::kInvalidArgument);
  EXPECT(routes.hold(~0ull - 10, 20, device, &refused) == Status::kInvalidArgument);
  EXPECT_EQ(deviceBytes(), (size_t)3072);
  EXPECT_EQ(fallback.bytes, (size_t)(8192 - 3072));
  EXPECT(routes.release(umem) == Status::kOk);
  EXPECT(routes.release(again) == Status::kOk);
  EXPECT_EQ(deviceBytes(), (size_t)3072);  // [1024, 2048) stays with the range that mr still touches
  EXPECT(routes.release(mr) == Status::kOk && routes.release(mr) == Status::kNotFound);
  EXPECT_EQ(deviceBytes(), (size_t)0);
  EXPECT(routes.hold(base + 4000, 200, other, &refused) == Status::kOk);
  EXPECT(routes.release(refused) == Status::kOk);
}

// Host memory is never device memory, with or without a GPU. With one, asking leaves no CUDA error behind
// (without one, every runtime call reports the missing driver or device anyway), and cudaMalloc'd memory
// is device memory, on its device.
LL_TEST(cuda_device_of) {
  Block b(4096);
  int device = -7;
  EXPECT(!cudaDeviceOf(b.addr(), &device));
  EXPECT_EQ(device, -7);
  if (!haveGpu()) return;
  EXPECT(!cudaDeviceOf(b.addr(), &device));
  EXPECT(cudaGetLastError() == cudaSuccess);
  void* d = nullptr;
  EXPECT(cudaMalloc(&d, 4096) == cudaSuccess);
  EXPECT(cudaDeviceOf((uint64_t)(uintptr_t)d + 100, &device));
  int current = -1;
  EXPECT(cudaGetDevice(&current) == cudaSuccess);
  EXPECT_EQ(device, current);
  EXPECT(cudaFree(d) == cudaSuccess);
}

// A failed CUDA call is recorded, named, and a failed read yields zeros: without a GPU every access
// fails; with one, an address that is no device memory does.
LL_TEST(cuda_memory_reports_failure) {
  CudaMemory dev(0);
  uint64_t v = ~0ull;
  dev.read(haveGpu() ? 64 : 4096, &v, sizeof(v));
  EXPECT(!dev.ok());
  EXPECT_EQ(v, (uint64_t)0);
  EXPECT_MSG(dev.error().find("CudaMemory(device 0): cuda") == 0, "%s", dev.error().c_str());
  std::printf("  recorded: %s\n", dev.error().c_str());
}

// Device memory behind a model: rank 1's target region is GPU memory, reached through a MemoryRouter
// (its rings stay in host memory). Rank 0 writes into it and fetch-adds a counter over the socket wire;
// both devices live in this process, as two ranks sharing one GPU would in two.
LL_TEST(cuda_memory_round_trip) {
  if (!haveGpu()) LL_SKIP("no GPU");
  constexpr size_t kBytes = 8192, kCounter = 4096;
  void* d = nullptr;
  EXPECT(cudaMalloc(&d, kBytes) == cudaSuccess && cudaMemset(d, 0, kBytes) == cudaSuccess);
  const uint64_t dev = (uint64_t)(uintptr_t)d;
  const std::string dir = SocketWire::jobDir("test-" + std::to_string(getpid()) + "-cuda");
  HostMemory host;
  CudaMemory gpu(0);
  MemoryRouter router(host);
  EXPECT(router.add(dev, kBytes, gpu) == Status::kOk);
  {
    Node a(0, 2, dir), b(1, 2, dir, 2000, &router);
    b.useTarget(dev, kBytes);
    a.connect({a.info(), b.info()});
    b.connect({a.info(), b.info()});
    fillFor(a, 0, 1, 1000);
    expectOk(a.run(1, a.writeWqe(1, dev + 8, b.info().rkey, 1000, a.local.addr())));
    for (uint64_t i = 0; i < 3; i++) {
      expectOk(a.run(1, a.fetchAddWqe(1, dev + kCounter, b.info().rkey, 5, a.local.addr() + 4096)));
      uint64_t old;
      std::memcpy(&old, a.local.p() + 4096, 8);
      EXPECT_EQ(old, 5 * i);
    }
  }
  std::vector<uint8_t> back(kBytes);
  EXPECT(cudaMemcpy(back.data(), d, kBytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  EXPECT(allBytes(back.data(), 8, 0) && allBytes(back.data() + 1008, kCounter - 1008, 0));
  EXPECT(holds(back.data() + 8, 0, 1, 1000));
  uint64_t counter;
  std::memcpy(&counter, back.data() + kCounter, 8);
  EXPECT_EQ(counter, (uint64_t)15);
  EXPECT_MSG(gpu.ok(), "%s", gpu.error().c_str());
  cudaFree(d);
  EXPECT(cleanUp(dir).empty());
}

LL_TEST_MAIN()
