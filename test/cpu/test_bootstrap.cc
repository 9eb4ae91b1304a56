// The TCP bootstrap with real processes: each rank is a forked child with its own bootstrap, and every
// byte a collective delivers is checked. Error cases must fail with the documented code and a message,
// within their timeout, and never hang (a child that outlives kChildLimitMs is killed and fails).
#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "test/cpu/fork_ranks.h"
#include "test/harness.h"

namespace {

constexpr int kTimeoutMs = 10000;
constexpr int kChildLimitMs = 30000;
constexpr int kIterations = 50;

// A call expected to fail with `code`, leaving a last error that contains `text`.
#define EXPECT_FAILS(call, code, text)                                                           \
  do {                                                                                           \
    llResult_t res_ = (call);                                                                    \
    EXPECT_MSG(res_ == (code), "%s returned '%s', expected '%s' (last error: %s)", #call,        \
               llGetErrorString(res_), llGetErrorString(code), llGetLastError(nullptr));         \
    EXPECT_MSG(strstr(llGetLastError(nullptr), (text)) != nullptr, "last error '%s' lacks '%s'", \
               llGetLastError(nullptr), (text));                                                 \
  } while (0)

using lltest::openFds;

int runChildren(int count, const std::function<void(int)>& fn) { return lltest::runChildren(count, fn, kChildLimitMs); }

// Rank-, iteration- and offset-specific bytes, so that a slot delivered to the wrong place shows.
unsigned char pattern(int rank, int iter, size_t i) {
  return (unsigned char)(i * 131 + (i >> 9) + rank * 29 + iter * 7 + 1);
}

void fill(char* p, size_t n, int rank, int iter) {
  for (size_t i = 0; i < n; i++) p[i] = (char)pattern(rank, iter, i);
}

void check(const char* p, size_t n, int rank, int iter, const char* what) {
  for (size_t i = 0; i < n; i++)
    EXPECT_MSG((unsigned char)p[i] == pattern(rank, iter, i), "%s: byte %zu of rank %d's %zu, iteration %d",
               what, i, rank, n, iter);
}

// allGather of several sizes, a broadcast from every root and a barrier, `iters` times.
void exercise(llBootstrap* b, int iters) {
  static const size_t kSizes[] = {0, 1, 7, 4096, 1 << 20};
  std::vector<char> buf;
  for (int it = 0; it < iters; it++) {
    for (size_t bytes : kSizes) {
      buf.assign(b->nranks * bytes, (char)0xee);
      fill(buf.data() + b->rank * bytes, bytes, b->rank, it);
      EXPECT_OK(b->allGather(buf.data(), bytes));
      for (int r = 0; r < b->nranks; r++) check(buf.data() + r * bytes, bytes, r, it, "allGather");
    }
    for (int root = 0; root < b->nranks; root++) {
      size_t bytes = (root * 37 + it * 11) % 300;
      buf.assign(bytes, (char)0xee);
      if (b->rank == root) fill(buf.data(), bytes, root, it);
      EXPECT_OK(b->broadcast(buf.data(), bytes, root));
      check(buf.data(), bytes, root, it, "broadcast");
    }
    EXPECT_OK(b->barrier());
  }
}

// Creates rank `rank`'s bootstrap, runs body, destroys it, and checks that no descriptor outlives it.
void withBootstrap(const llUniqueId& id, int rank, int nranks,
                   const std::function<void(llBootstrap*)>& body) {
  int fds = openFds();
  llBootstrap* b = nullptr;
  EXPECT_OK(llBootstrapTcpCreate(id, rank, nranks, kTimeoutMs, &b));
  EXPECT_EQ(b->rank, rank);
  EXPECT_EQ(b->nranks, nranks);
  body(b);
  delete b;
  EXPECT_EQ(openFds(), fds);
}

void runCommunicator(const llUniqueId& id, int nranks, int iters) {
  auto rank = [&](int r) { withBootstrap(id, r, nranks, [&](llBootstrap* b) { exercise(b, iters); }); };
  EXPECT_EQ(runChildren(nranks, rank), 0);
}

int freePort(int family = AF_INET) {
  llSocketAddr a = {};
  if (family == AF_INET6) {
    a.sin6.sin6_family = AF_INET6;
    a.sin6.sin6_addr = in6addr_loopback;
  } else {
    a.sin.sin_family = AF_INET;
    a.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  llSocket s;
  llSocketAddr bound;
  if (llSocketListen(a, llNowMs(), &s, &bound) != llSuccess) return -1;
  return llSocketAddrPort(bound);
}

llUniqueId relayId() {
  llUniqueId id;
  EXPECT_OK(llGetUniqueId(&id));
  return id;
}

llUniqueId directId(const char* host, int port, uint64_t secret = 0x5eed) {
  llUniqueId id;
  EXPECT_OK(llUniqueIdFromAddress(host, port, secret, &id));
  return id;
}

llUniqueId withSecret(const llUniqueId& id, uint64_t flip) {
  llUniqueIdInfo info;
  EXPECT_OK(llUniqueIdDecode(id, &info));
  info.secret ^= flip;
  llUniqueId out;
  llUniqueIdEncode(info, &out);
  return out;
}

// Lets one child hold the others back until it is done (or a generous limit passes).
struct Gate {
  int fds[2];
  Gate() {
    if (pipe(fds) != 0) lltest::fail(__FILE__, __LINE__, "pipe failed");
  }
  ~Gate() {
    close(fds[0]);
    close(fds[1]);
  }
  void open(int waiters) {
    for (int i = 0; i < waiters; i++) EXPECT_EQ(write(fds[1], "x", 1), (ssize_t)1);
  }
  void wait() {
    pollfd p = {fds[0], POLLIN, 0};
    char c;
    if (poll(&p, 1, kTimeoutMs) == 1) EXPECT_EQ(read(fds[0], &c, 1), (ssize_t)1);
  }
};

void expectTimeoutWithin(const llUniqueId& id, int rank, int nranks, int timeoutMs, int limitMs,
                         const char* text) {
  llBootstrap* b = nullptr;
  int64_t start = llNowMs();
  EXPECT_FAILS(llBootstrapTcpCreate(id, rank, nranks, timeoutMs, &b), llTimeout, text);
  int64_t took = llNowMs() - start;
  EXPECT_MSG(took < limitMs, "rank %d gave up after %lld ms", rank, (long long)took);
}

bool haveIpv6Loopback() { return freePort(AF_INET6) > 0; }

}  // namespace

LL_TEST(id_roundtrip_hex) {
  llUniqueId id = relayId(), back;
  char hex[2 * LL_UNIQUE_ID_BYTES + 1];
  EXPECT_OK(llUniqueIdToHex(id, hex));
  EXPECT_EQ(strlen(hex), (size_t)2 * LL_UNIQUE_ID_BYTES);
  EXPECT_EQ(strspn(hex, "0123456789abcdef"), (size_t)2 * LL_UNIQUE_ID_BYTES);
  EXPECT_EQ(std::strtoul(std::string(hex, 2).c_str(), nullptr, 16),
            (unsigned long)(unsigned char)id.internal[0]);
  EXPECT_OK(llUniqueIdFromHex(hex, &back));
  EXPECT(memcmp(&id, &back, sizeof(id)) == 0);
  for (char& c : hex) c = (char)toupper(c);
  EXPECT_OK(llUniqueIdFromHex(hex, &back));
  EXPECT(memcmp(&id, &back, sizeof(id)) == 0);

  llUniqueIdInfo info;
  EXPECT_OK(llUniqueIdDecode(id, &info));
  EXPECT_EQ(info.mode, (uint32_t)LL_ID_RELAY);
  EXPECT(llSocketAddrPort(info.addr) > 0);
  llUniqueId other = relayId();
  EXPECT(memcmp(&id, &other, sizeof(id)) != 0);  // a fresh secret and root each time

  EXPECT_OK(llUniqueIdDecode(directId("127.0.0.1", 29500, 42), &info));
  EXPECT_EQ(info.mode, (uint32_t)LL_ID_DIRECT);
  EXPECT_EQ(info.secret, (uint64_t)42);
  EXPECT_EQ(llSocketAddrPort(info.addr), 29500);
  EXPECT_OK(llUniqueIdDecode(directId("::1", 29501), &info));
  EXPECT_EQ((int)info.addr.sa.sa_family, AF_INET6);

  EXPECT_FAILS(llUniqueIdFromHex("abc", &back), llInvalidArgument, "characters");
  hex[7] = 'g';
  EXPECT_FAILS(llUniqueIdFromHex(hex, &back), llInvalidArgument, "offset 7");
  EXPECT_FAILS(llUniqueIdFromHex(nullptr, &back), llInvalidArgument, "NULL");
  EXPECT_FAILS(llGetUniqueId(nullptr), llInvalidArgument, "NULL");
  EXPECT_FAILS(llUniqueIdFromAddress("127.0.0.1", 0, 1, &back), llInvalidArgument, "port");
  EXPECT_FAILS(llUniqueIdFromAddress("no-such-host.invalid", 1234, 1, &back), llInvalidArgument, "resolve");

  llUniqueId zero = {};
  llBootstrap* b = nullptr;
  EXPECT_FAILS(llBootstrapTcpCreate(zero, 0, 2, 1000, &b), llInvalidArgument, "magic");
  EXPECT(b == nullptr);
}

LL_TEST(one_rank) {
  for (const llUniqueId& id : {relayId(), directId("127.0.0.1", 1)}) {
    int fds = openFds();
    llBootstrap* b = nullptr;
    EXPECT_OK(llBootstrapTcpCreate(id, 0, 1, 1000, &b));
    EXPECT_EQ(openFds(), fds);  // one rank talks to nobody: no socket
    exercise(b, kIterations);
    EXPECT_FAILS(b->broadcast(nullptr, 0, 1), llInvalidArgument, "root 1");
    EXPECT_FAILS(b->allGather(nullptr, 8), llInvalidArgument, "NULL");
    delete b;
    EXPECT_EQ(openFds(), fds);
  }
}

LL_TEST(two_ranks) {
  runCommunicator(relayId(), 2, kIterations);
  runCommunicator(directId("127.0.0.1", freePort()), 2, kIterations);
  if (haveIpv6Loopback()) runCommunicator(directId("::1", freePort(AF_INET6)), 2, 5);
}

LL_TEST(four_ranks) { runCommunicator(relayId(), 4, kIterations); }

// One id serves communicators one after another (ranks create several from one LLEP_UNIQUE_ID).
LL_TEST(relay_id_serves_several) {
  llUniqueId id = relayId();
  auto rank = [&](int r) {
    for (int n = 0; n < 3; n++) withBootstrap(id, r, 3, [&](llBootstrap* b) { exercise(b, 3); });
  };
  EXPECT_EQ(runChildren(3, rank), 0);
}

LL_TEST(eight_ranks) { runCommunicator(relayId(), 8, kIterations); }

LL_TEST(wrong_secret_refused) {
  // At the root: the intruder is refused first, then the real ranks meet as if it had never come.
  llUniqueId id = relayId();
  Gate gate;
  auto atRoot = [&](int i) {
    if (i == 2) {
      llBootstrap* b = nullptr;
      EXPECT_FAILS(llBootstrapTcpCreate(withSecret(id, 1), 1, 2, kTimeoutMs, &b), llInvalidUsage,
                   "another run");
      return gate.open(2);
    }
    gate.wait();
    withBootstrap(id, i, 2, [](llBootstrap* b) { exercise(b, 3); });
  };
  EXPECT_EQ(runChildren(3, atRoot), 0);

  // At rank 0's hub: it refuses the intruder and keeps waiting for the real rank 1.
  llUniqueId direct = directId("127.0.0.1", freePort());
  Gate hubGate;
  auto atHub = [&](int i) {
    if (i == 2) {
      llBootstrap* b = nullptr;
      EXPECT_FAILS(llBootstrapTcpCreate(withSecret(direct, 1ull << 40), 1, 2, kTimeoutMs, &b), llInvalidUsage,
                   "another run");
      return hubGate.open(1);
    }
    if (i == 1) hubGate.wait();
    withBootstrap(direct, i, 2, [](llBootstrap* b) { exercise(b, 3); });
  };
  EXPECT_EQ(runChildren(3, atHub), 0);
}

LL_TEST(missing_rank_times_out) {
  // Ranks 0 and 1 of 3 come; the root names rank 2 to both when the first one's timeout runs out.
  llUniqueId id = relayId();
  EXPECT_EQ(runChildren(2, [&](int r) { expectTimeoutWithin(id, r, 3, 1000, 3000, "rank(s) 2 of 3"); }), 0);

  // The same at rank 0's hub.
  llUniqueId direct = directId("127.0.0.1", freePort());
  auto atHub = [&](int r) { expectTimeoutWithin(direct, r, 3, 1000, 3000, "rank(s) 2 of 3"); };
  EXPECT_EQ(runChildren(2, atHub), 0);

  // Without rank 0 there is no hub: the others give up connecting to it.
  llUniqueId noHub = directId("127.0.0.1", freePort());
  EXPECT_EQ(runChildren(2, [&](int i) { expectTimeoutWithin(noHub, i + 1, 3, 1000, 3000, "rank 0"); }), 0);

  // A rank that leaves mid-run: rank 0 names it, and passes the news on to rank 1.
  llUniqueId mid = relayId();
  auto leaving = [&](int r) {
    withBootstrap(mid, r, 3, [&](llBootstrap* b) {
      EXPECT_OK(b->barrier());
      if (r == 2) return;
      char buf[3 * 8];
      EXPECT_FAILS(b->allGather(buf, 8), llRemoteError, "rank 2");
      EXPECT_FAILS(b->barrier(), llInvalidUsage, "earlier failure");
    });
  };
  EXPECT_EQ(runChildren(3, leaving), 0);
}

LL_TEST(env_master_addr) {
  // Two communicators in a row on one port: rank 0 listens again, the others retry until it does.
  // The second takes its secret from LLEP_BOOTSTRAP_SECRET and its ranks from Open MPI's variables.
  std::string port = std::to_string(freePort());
  auto torchrun = [&](int r) {
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", port.c_str(), 1);
    for (int round = 0; round < 2; round++) {
      unsetenv("RANK");
      unsetenv("WORLD_SIZE");
      setenv(round == 0 ? "RANK" : "OMPI_COMM_WORLD_RANK", std::to_string(r).c_str(), 1);
      setenv(round == 0 ? "WORLD_SIZE" : "OMPI_COMM_WORLD_SIZE", "3", 1);
      if (round == 1) setenv("LLEP_BOOTSTRAP_SECRET", "job-42", 1);
      llUniqueId id;
      int rank = -1, nranks = -1;
      EXPECT_OK(llUniqueIdFromEnv(&id, &rank, &nranks));
      EXPECT_EQ(rank, r);
      EXPECT_EQ(nranks, 3);
      withBootstrap(id, rank, nranks, [](llBootstrap* b) { exercise(b, 5); });
    }
  };
  EXPECT_EQ(runChildren(3, torchrun), 0);

  // LLEP_UNIQUE_ID (what llrun sets) wins over MASTER_ADDR/PORT.
  llUniqueId relay = relayId();
  char hex[2 * LL_UNIQUE_ID_BYTES + 1];
  EXPECT_OK(llUniqueIdToHex(relay, hex));
  auto llrun = [&](int r) {
    for (const char* v : {"RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}) unsetenv(v);
    setenv("LLEP_UNIQUE_ID", hex, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "1", 1);
    setenv("PMI_RANK", std::to_string(r).c_str(), 1);
    setenv("PMI_SIZE", "2", 1);
    llUniqueId id;
    int rank = -1, nranks = -1;
    EXPECT_OK(llUniqueIdFromEnv(&id, &rank, &nranks));
    EXPECT(memcmp(&id, &relay, sizeof(id)) == 0);
    withBootstrap(id, rank, nranks, [](llBootstrap* b) { exercise(b, 2); });
  };
  EXPECT_EQ(runChildren(2, llrun), 0);

  // What is missing is named.
  auto missing = [&](int) {
    for (const char* v : {"LLEP_UNIQUE_ID", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                          "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE"})
      unsetenv(v);
    llUniqueId id;
    int rank, nranks;
    EXPECT_FAILS(llUniqueIdFromEnv(&id, &rank, &nranks), llInvalidUsage, "MASTER_ADDR");
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", "http", 1);
    EXPECT_FAILS(llUniqueIdFromEnv(&id, &rank, &nranks), llInvalidUsage, "MASTER_PORT=http");
    setenv("MASTER_PORT", "29500", 1);
    EXPECT_FAILS(llUniqueIdFromEnv(&id, &rank, &nranks), llInvalidUsage, "RANK and WORLD_SIZE");
    setenv("RANK", "3", 1);
    setenv("WORLD_SIZE", "3", 1);
    EXPECT_FAILS(llUniqueIdFromEnv(&id, &rank, &nranks), llInvalidUsage, "RANK=3");
  };
  EXPECT_EQ(runChildren(1, missing), 0);
}

LL_TEST(rank_out_of_range) {
  llUniqueId id = relayId();
  llBootstrap* b = nullptr;
  EXPECT_FAILS(llBootstrapTcpCreate(id, 2, 2, 1000, &b), llInvalidArgument, "rank 2 out of range");
  EXPECT_FAILS(llBootstrapTcpCreate(id, -1, 2, 1000, &b), llInvalidArgument, "rank -1 out of range");
  EXPECT_FAILS(llBootstrapTcpCreate(id, 0, 0, 1000, &b), llInvalidArgument, "out of range");

  // A rank that got past its own checks is still refused by the root...
  llUniqueIdInfo info;
  EXPECT_OK(llUniqueIdDecode(id, &info));
  llHello bad = {};
  bad.rank = 5;
  bad.nranks = 2;
  bad.secret = info.secret;
  llSocket conn;
  llSocketAddr hub;
  EXPECT_FAILS(llRendezvousJoin(info.addr, "root", bad, llNowMs() + 3000, &conn, &hub), llInvalidUsage,
               "rank 5 is out of range for 2 ranks");

  // ...and by rank 0's hub, which then gives up on the communicator too.
  llUniqueId direct = directId("127.0.0.1", freePort());
  EXPECT_OK(llUniqueIdDecode(direct, &info));
  bad.secret = info.secret;
  auto atHub = [&](int i) {
    if (i == 0) {
      EXPECT_FAILS(llBootstrapTcpCreate(direct, 0, 2, 5000, &b), llInvalidUsage, "rank 5 is out of range");
      return;
    }
    llSocket c;
    llSocketAddr h;
    EXPECT_FAILS(llRendezvousJoin(info.addr, "rank 0", bad, llNowMs() + 5000, &c, &h), llInvalidUsage,
                 "rank 5 is out of range");
  };
  EXPECT_EQ(runChildren(2, atHub), 0);

  // Two ranks claiming the same number (at the hub, which is sure to be there when they come).
  llUniqueId dup = directId("127.0.0.1", freePort());
  auto twice = [&](int i) {
    EXPECT_FAILS(llBootstrapTcpCreate(dup, i == 2 ? 1 : i, 3, 5000, &b), llInvalidUsage,
                 "rank 1 joined twice");
  };
  EXPECT_EQ(runChildren(3, twice), 0);
}

LL_TEST(nranks_disagree) {
  // Rank 1 thinks there are 3 ranks: the root, and then rank 0's hub, reject both.
  for (const llUniqueId& id : {relayId(), directId("127.0.0.1", freePort())}) {
    auto disagree = [&](int r) {
      llBootstrap* b = nullptr;
      int64_t start = llNowMs();
      EXPECT_FAILS(llBootstrapTcpCreate(id, r, 2 + r, 5000, &b), llInvalidUsage, "says there are");
      EXPECT(llNowMs() - start < 3000);
    };
    EXPECT_EQ(runChildren(2, disagree), 0);
  }

  // Ranks calling the same collective with different sizes are told so, not left waiting.
  llUniqueId sizes = relayId();
  auto mismatch = [&](int r) {
    withBootstrap(sizes, r, 2, [&](llBootstrap* b) {
      char buf[2 * 16];
      if (r == 0)
        EXPECT_FAILS(b->allGather(buf, 8), llInternalError, "rank 1");
      else
        EXPECT_FAILS(b->allGather(buf, 16), llRemoteError, "bytes 16");
    });
  };
  EXPECT_EQ(runChildren(2, mismatch), 0);
}

LL_TEST_MAIN()
