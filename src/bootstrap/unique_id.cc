#include "bootstrap/unique_id.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "api.h"
#include "checks.h"
#include "param.h"

namespace {

// A well-behaved rank sends its hello right after connecting; anything slower is not one of ours and
// must not hold up the others for long.
constexpr int64_t kHelloGraceMs = 2000;
// How long a rank waits for the server's answer past its own deadline: the server gives up at that
// deadline and says which ranks are missing, which is worth more than a local "timed out".
constexpr int64_t kReplySlackMs = 1000;
// Answers are small and fit in any socket buffer; this only bounds a peer that stopped reading.
constexpr int64_t kAnswerMs = 1000;
// More ranks than anyone runs; bounds what an authenticated but broken hello can make a server allocate.
constexpr int kMaxRanks = 1 << 20;

llResult_t randomSecret(uint64_t* out) {
  ssize_t n;
  do {
    n = getrandom(out, sizeof(*out), 0);
  } while (n < 0 && errno == EINTR);
  if (n == (ssize_t)sizeof(*out)) return llSuccess;
  // Kernels before 3.17 have no getrandom; /dev/urandom serves the same pool.
  int fd;
  SYSCHECKVAL(open("/dev/urandom", O_RDONLY | O_CLOEXEC), "open(/dev/urandom)", fd);
  do {
    n = read(fd, out, sizeof(*out));
  } while (n < 0 && errno == EINTR);
  close(fd);
  LL_REQUIRE(n == (ssize_t)sizeof(*out), llSystemError, "cannot read 8 bytes from /dev/urandom");
  return llSuccess;
}

// The server side of one rendezvous: who has arrived, and until when to wait for the others.
struct Gather {
  const llSocket& listener;
  uint64_t secret;
  int nranks;      // 0 until the first hello at the root
  int nranksFrom;  // the rank whose hello set nranks
  int firstRank;
  int64_t deadlineMs;
  std::vector<llSocket>& conns;
  std::vector<llHello>& hellos;
  std::vector<bool> present;
  int arrived = 0;

  bool complete() const { return nranks > 0 && arrived == nranks - firstRank; }
};

llResult_t answer(llSocket& s, int32_t status, const llSocketAddr& hub, const char* detail,
                  int64_t deadlineMs) {
  llHelloReply r = {};
  r.magic = LL_HELLO_MAGIC;
  r.status = status;
  r.hub = hub;
  snprintf(r.detail, sizeof(r.detail), "%s", detail);
  return llSocketSend(s, &r, sizeof(r), deadlineMs);
}

// Ends the rendezvous for everyone who arrived (and `extra`, the rank that caused it) with one reason.
// The warning comes last so that it, not a failed answer, is the last error.
llResult_t rejectAll(Gather& g, llSocket* extra, int32_t status, const char* detail, llResult_t result) {
  int64_t deadline = llNowMs() + kAnswerMs;
  if (extra) answer(*extra, status, {}, detail, deadline);
  for (int r = g.firstRank; r < (int)g.conns.size(); r++)
    if (g.present[r]) answer(g.conns[r], status, {}, detail, deadline);
  g.conns.clear();
  LL_WARN("rendezvous on %s failed: %s", g.listener.peer, detail);
  return result;
}

llResult_t timeoutAll(Gather& g) {
  if (g.nranks == 0) {
    LL_WARN("rendezvous on %s timed out: no rank joined", g.listener.peer);
    return llTimeout;
  }
  std::string missing;
  int count = 0;
  for (int r = g.firstRank; r < g.nranks; r++) {
    if (g.present[r]) continue;
    if (++count <= 16) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (count > 16) missing += ", ... (" + std::to_string(count) + " missing)";
  char detail[sizeof(llHelloReply::detail)];
  snprintf(detail, sizeof(detail), "timed out waiting for rank(s) %s of %d", missing.c_str(), g.nranks);
  return rejectAll(g, nullptr, LL_RDV_TIMEOUT, detail, llTimeout);
}

void setNranks(Gather& g, int nranks, int from) {
  g.nranks = nranks;
  g.nranksFrom = from;
  g.conns.resize(nranks);
  g.hellos.resize(nranks);
  g.present.assign(nranks, false);
}

// Checks a hello that carries the right secret; a bad one ends the rendezvous for everyone, since the
// ranks disagree on what communicator they form.
llResult_t admit(Gather& g, llSocket&& s, const llHello& h) {
  char detail[sizeof(llHelloReply::detail)];
  if (h.nranks <= 0 || h.nranks > kMaxRanks) {
    snprintf(detail, sizeof(detail), "rank %d says there are %d ranks", h.rank, h.nranks);
    return rejectAll(g, &s, LL_RDV_RANK_RANGE, detail, llInvalidUsage);
  }
  if (g.nranks == 0) setNranks(g, h.nranks, h.rank);
  if (h.nranks != g.nranks) {
    snprintf(detail, sizeof(detail), "rank %d says there are %d ranks, rank %d says %d", h.rank, h.nranks,
             g.nranksFrom, g.nranks);
    return rejectAll(g, &s, LL_RDV_NRANKS_MISMATCH, detail, llInvalidUsage);
  }
  if (h.rank < 0 || h.rank >= g.nranks) {
    snprintf(detail, sizeof(detail), "rank %d is out of range for %d ranks", h.rank, g.nranks);
    return rejectAll(g, &s, LL_RDV_RANK_RANGE, detail, llInvalidUsage);
  }
  if (h.rank < g.firstRank || g.present[h.rank]) {
    snprintf(detail, sizeof(detail), "rank %d joined twice", h.rank);
    return rejectAll(g, &s, LL_RDV_DUP_RANK, detail, llInvalidUsage);
  }
  char where[sizeof(s.peer)];
  snprintf(where, sizeof(where), "%s", s.peer);
  snprintf(s.peer, sizeof(s.peer), "rank %d at %.80s", h.rank, where);
  g.conns[h.rank] = std::move(s);
  g.hellos[h.rank] = h;
  g.present[h.rank] = true;
  g.arrived++;
  // The first rank to give up ends the rendezvous for all: tell everyone then, not later.
  g.deadlineMs = std::min(g.deadlineMs, llNowMs() + std::max(0, h.remainingMs));
  return llSuccess;
}

// Reads the hello of a new connection. Strangers are dropped and a wrong secret is refused; neither
// affects the ranks already there.
llResult_t greet(Gather& g, llSocket&& s) {
  llHello h;
  if (llSocketRecv(s, &h, sizeof(h), std::min(g.deadlineMs, llNowMs() + kHelloGraceMs)) != llSuccess ||
      h.magic != LL_HELLO_MAGIC) {
    LL_INFO(LL_BOOTSTRAP, "rendezvous on %s: dropped %s, not an llep rank", g.listener.peer, s.peer);
    return llSuccess;
  }
  if (h.secret != g.secret) {
    answer(s, LL_RDV_BAD_SECRET, {}, "wrong secret", llNowMs() + kAnswerMs);
    LL_WARN("rendezvous on %s: refused %s claiming rank %d: wrong secret (unique id from another run?)",
            g.listener.peer, s.peer, h.rank);
    return llSuccess;
  }
  return admit(g, std::move(s), h);
}

llResult_t acceptPending(const llSocket& listener, std::vector<llSocket>* fresh) {
  for (;;) {
    llSocket s;
    LLCHECK(llSocketAccept(listener, &s));
    if (s.fd < 0) return llSuccess;
    fresh->push_back(std::move(s));
  }
}

llResult_t replyResult(const llSocket& s, const llHello& hello, const llHelloReply& r) {
  switch (r.magic == LL_HELLO_MAGIC ? r.status : -1) {
    case LL_RDV_OK:
      return llSuccess;
    case LL_RDV_BAD_SECRET:
      LL_WARN("%s refused rank %d: the secret does not match (unique id from another run?)", s.peer,
              hello.rank);
      return llInvalidUsage;
    case LL_RDV_TIMEOUT:
      LL_WARN("%s gave up: %s", s.peer, r.detail);
      return llTimeout;
    case LL_RDV_RANK_RANGE:
    case LL_RDV_DUP_RANK:
    case LL_RDV_NRANKS_MISMATCH:
      LL_WARN("%s rejected the communicator: %s", s.peer, r.detail);
      return llInvalidUsage;
    default:
      LL_WARN("%s sent an answer that is not an llep rendezvous reply", s.peer);
      return llRemoteError;
  }
}

// The root of a RELAY id: serves one communicator, then closes everything.
// True once a connection is waiting on the listener, false if none came before the deadline.
bool connectionArrives(const llSocket& listener, int64_t deadlineMs) {
  while (true) {
    int64_t left = deadlineMs - llNowMs();
    if (left <= 0) return false;
    pollfd p = {listener.fd, POLLIN, 0};
    int rc = poll(&p, 1, (int)std::min<int64_t>(left, INT_MAX));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

// Serves communicators one after another: ranks create them in the same order, and no rank can join
// communicator n+1 before every rank has joined communicator n, so the hellos never mix. The thread
// ends quietly once no rank has come for lifeMs after the first communicator.
void serveRoot(llSocket listener, uint64_t secret, int64_t lifeMs) {
  for (int served = 0;; served++) {
    if (served > 0 && !connectionArrives(listener, llNowMs() + lifeMs)) return;
    std::vector<llSocket> conns;
    std::vector<llHello> hellos;
    if (llRendezvousServe(listener, secret, 0, 0, llNowMs() + lifeMs, &conns, &hellos) != llSuccess) return;
    if (llRendezvousAccept(conns, 0, hellos[0].hub, llNowMs() + kAnswerMs) != llSuccess) return;
    LL_INFO(LL_BOOTSTRAP, "rendezvous root served communicator %d (%zu ranks)", served, conns.size());
  }
}

bool parseInt(const char* s, int* out) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < INT_MIN || v > INT_MAX) return false;
  *out = (int)v;
  return true;
}

// Every rank derives the same secret without talking to the others. Without LLEP_BOOTSTRAP_SECRET it
// only keeps a stray job on a reused port out, it is no protection against an attacker.
uint64_t envSecret(int port) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  const char* s = llParamBootstrapSecret();
  if (*s == '\0') return h ^ (uint64_t)port * 0x9e3779b97f4a7c15ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

llResult_t idFromEnv(llUniqueId* id) {
  const char* hex = llParamUniqueId();
  if (*hex) return llUniqueIdFromHex(hex, id);
  const char* addr = getenv("MASTER_ADDR");
  const char* port = getenv("MASTER_PORT");
  LL_REQUIRE(
      addr && *addr && port && *port, llInvalidUsage,
      "no rendezvous in the environment: set LLEP_UNIQUE_ID (llrun does) or MASTER_ADDR and MASTER_PORT");
  int p = 0;
  LL_REQUIRE(parseInt(port, &p) && p > 0 && p < 65536, llInvalidUsage, "MASTER_PORT=%s is not a port", port);
  return llUniqueIdFromAddress(addr, p, envSecret(p), id);
}

llResult_t rankFromEnv(int* rank, int* nranks) {
  static const char* const kVars[][2] = {
      {"RANK", "WORLD_SIZE"}, {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}};
  for (const auto& v : kVars) {
    const char* r = getenv(v[0]);
    const char* n = getenv(v[1]);
    if (r == nullptr || n == nullptr) continue;
    LL_REQUIRE(parseInt(r, rank) && parseInt(n, nranks) && *nranks > 0 && *rank >= 0 && *rank < *nranks,
               llInvalidUsage, "%s=%s and %s=%s are not a rank below a positive size", v[0], r, v[1], n);
    return llSuccess;
  }
  LL_WARN(
      "rank and size not in the environment: set RANK and WORLD_SIZE (or OMPI_COMM_WORLD_RANK and "
      "OMPI_COMM_WORLD_SIZE, or PMI_RANK and PMI_SIZE)");
  return llInvalidUsage;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

llResult_t llUniqueIdDecode(const llUniqueId& id, llUniqueIdInfo* info) {
  memcpy(info, id.internal, sizeof(*info));
  LL_REQUIRE(
      info->magic == LL_UNIQUE_ID_MAGIC, llInvalidArgument,
      "unique id has magic 0x%08x, not 0x%08x: not made by llGetUniqueId (uninitialised or corrupted?)",
      info->magic, LL_UNIQUE_ID_MAGIC);
  LL_REQUIRE(info->mode == LL_ID_RELAY || info->mode == LL_ID_DIRECT, llInvalidArgument,
             "unique id has unknown mode %u (corrupted?)", info->mode);
  return llSuccess;
}

void llUniqueIdEncode(const llUniqueIdInfo& info, llUniqueId* id) {
  memset(id, 0, sizeof(*id));
  memcpy(id->internal, &info, sizeof(info));
}

LL_API llResult_t llGetUniqueId(llUniqueId* uniqueId) {
  LL_REQUIRE(uniqueId != nullptr, llInvalidArgument, "llGetUniqueId: uniqueId is NULL");
  llUniqueIdInfo info = {};
  info.magic = LL_UNIQUE_ID_MAGIC;
  info.mode = LL_ID_RELAY;
  LLCHECK(randomSecret(&info.secret));
  llSocketAddr addr;
  LLCHECK(llSocketFindIfAddr(&addr));
  llSocket listener;
  LLCHECK(llSocketListen(addr, llNowMs(), &listener, &info.addr));
  int64_t lifeMs = llParamBootstrapTimeoutMs();
  LL_INFO(LL_BOOTSTRAP, "rendezvous root on %s for %lld ms", listener.peer, (long long)lifeMs);
  try {
    std::thread(serveRoot, std::move(listener), info.secret, lifeMs).detach();
  } catch (const std::system_error& e) {
    LL_WARN("llGetUniqueId: cannot start the rendezvous thread: %s", e.what());
    return llSystemError;
  }
  llUniqueIdEncode(info, uniqueId);
  return llSuccess;
}

llResult_t llUniqueIdFromAddress(const char* host, int port, uint64_t secret, llUniqueId* out) {
  LL_REQUIRE(host != nullptr && out != nullptr, llInvalidArgument, "llUniqueIdFromAddress: NULL argument");
  LL_REQUIRE(port > 0 && port < 65536, llInvalidArgument, "llUniqueIdFromAddress: port %d out of range",
             port);
  llUniqueIdInfo info = {};
  info.magic = LL_UNIQUE_ID_MAGIC;
  info.mode = LL_ID_DIRECT;
  info.secret = secret;
  LLCHECK(llSocketAddrResolve(host, port, &info.addr));
  llUniqueIdEncode(info, out);
  return llSuccess;
}

llResult_t llUniqueIdToHex(const llUniqueId& id, char out[2 * LL_UNIQUE_ID_BYTES + 1]) {
  LL_REQUIRE(out != nullptr, llInvalidArgument, "llUniqueIdToHex: out is NULL");
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < LL_UNIQUE_ID_BYTES; i++) {
    unsigned char c = (unsigned char)id.internal[i];
    out[2 * i] = digits[c >> 4];
    out[2 * i + 1] = digits[c & 15];
  }
  out[2 * LL_UNIQUE_ID_BYTES] = '\0';
  return llSuccess;
}

llResult_t llUniqueIdFromHex(const char* hex, llUniqueId* out) {
  LL_REQUIRE(hex != nullptr && out != nullptr, llInvalidArgument, "llUniqueIdFromHex: NULL argument");
  size_t len = strlen(hex);
  LL_REQUIRE(len == 2 * LL_UNIQUE_ID_BYTES, llInvalidArgument,
             "unique id hex has %zu characters, expected %d", len, 2 * LL_UNIQUE_ID_BYTES);
  for (int i = 0; i < LL_UNIQUE_ID_BYTES; i++) {
    int hi = hexDigit(hex[2 * i]), lo = hexDigit(hex[2 * i + 1]);
    LL_REQUIRE(hi >= 0 && lo >= 0, llInvalidArgument, "unique id hex has a non-hex character at offset %d",
               hi < 0 ? 2 * i : 2 * i + 1);
    out->internal[i] = (char)(hi << 4 | lo);
  }
  return llSuccess;
}

llResult_t llUniqueIdFromEnv(llUniqueId* id, int* rank, int* nranks) {
  LL_REQUIRE(id != nullptr && rank != nullptr && nranks != nullptr, llInvalidArgument,
             "llUniqueIdFromEnv: NULL argument");
  LLCHECK(idFromEnv(id));
  LLCHECK(rankFromEnv(rank, nranks));
  return llSuccess;
}

llResult_t llRendezvousJoin(const llSocketAddr& server, const char* serverName, llHello hello,
                            int64_t deadlineMs, llSocket* conn, llSocketAddr* hub) {
  llSocket s;
  LLCHECK(llSocketConnect(server, serverName, deadlineMs, &s));
  hello.magic = LL_HELLO_MAGIC;
  hello.remainingMs = (int32_t)std::min<int64_t>(INT32_MAX, std::max<int64_t>(0, deadlineMs - llNowMs()));
  LLCHECK(llSocketSend(s, &hello, sizeof(hello), deadlineMs));
  llHelloReply r;
  LLCHECK(llSocketRecv(s, &r, sizeof(r), deadlineMs + kReplySlackMs));
  r.detail[sizeof(r.detail) - 1] = '\0';
  LLCHECK(replyResult(s, hello, r));
  *hub = r.hub;
  *conn = std::move(s);
  return llSuccess;
}

llResult_t llRendezvousServe(const llSocket& listener, uint64_t secret, int nranks, int firstRank,
                             int64_t deadlineMs, std::vector<llSocket>* conns, std::vector<llHello>* hellos) {
  Gather g{listener, secret, 0, 0, firstRank, deadlineMs, *conns, *hellos, {}};
  // A hub knows its communicator's size; it is rank 0, the rank that says so.
  if (nranks > 0) setNranks(g, nranks, 0);
  std::vector<llSocket> fresh;  // accepted, hello not read yet
  while (!g.complete()) {
    int64_t left = g.deadlineMs - llNowMs();
    if (left <= 0) return timeoutAll(g);
    std::vector<pollfd> fds = {{listener.fd, POLLIN, 0}};
    for (const llSocket& s : fresh) fds.push_back({s.fd, POLLIN, 0});
    int rc;
    SYSCHECKVAL(poll(fds.data(), fds.size(), (int)std::min<int64_t>(left, INT_MAX)), "poll", rc);
    // Newest first, so that erasing does not move the ones still to look at.
    for (size_t i = fresh.size(); i-- > 0;) {
      if (fds[i + 1].revents == 0) continue;
      llSocket s = std::move(fresh[i]);
      fresh.erase(fresh.begin() + i);
      LLCHECK(greet(g, std::move(s)));
    }
    if (fds[0].revents) LLCHECK(acceptPending(listener, &fresh));
  }
  return llSuccess;
}

// Everyone is answered even if one answer fails: the others then learn what is wrong from rank 0's hub,
// which names a missing rank, rather than from a silent timeout here.
llResult_t llRendezvousAccept(std::vector<llSocket>& conns, int firstRank, const llSocketAddr& hub,
                              int64_t deadlineMs) {
  llResult_t first = llSuccess;
  for (int r = firstRank; r < (int)conns.size(); r++) {
    llResult_t res = answer(conns[r], LL_RDV_OK, hub, "", deadlineMs);
    if (first == llSuccess) first = res;
  }
  return first;
}
