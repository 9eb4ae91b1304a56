// The TCP bootstrap: a star around rank 0's hub. Each rank r > 0 holds one connection, to rank 0; rank 0
// holds one per rank. A collective is one round: every rank r > 0 sends a header and its part, rank 0
// checks that all headers agree with its own call, then sends every rank the header and the result.
// A failure at rank 0 is forwarded to the others as an abort carrying its message, so that no rank
// waits for a round that will not come.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "checks.h"

namespace {

enum MsgType : uint32_t { MSG_ALLGATHER = 1, MSG_BROADCAST = 2, MSG_BARRIER = 3, MSG_ABORT = 4 };

// Precedes every message, so that ranks in different collectives, with different sizes or roots, are
// told so instead of reading each other's bytes as data.
struct MsgHeader {
  uint32_t type;   // MsgType
  uint32_t seq;    // collectives run so far: a rank out of step is caught
  uint64_t bytes;  // allGather: per rank; broadcast: total; abort: length of the reason
  int32_t root;    // broadcast
  int32_t pad;
};

// An abort's reason is a last-error line; anything longer is not from a well-behaved rank 0.
constexpr uint64_t kMaxAbortBytes = 1024;
// Aborts are small and fit in any socket buffer; this only bounds a peer that stopped reading.
constexpr int64_t kAbortSendMs = 1000;
// How long a rank r > 0 waits for rank 0's answer past its own deadline: rank 0 gives up at about the
// same time and names the rank that held it up, which is worth more than a local "timed out".
constexpr int64_t kAnswerSlackMs = 1000;

const char* opName(uint32_t type) {
  switch (type) {
    case MSG_ALLGATHER:
      return "allGather";
    case MSG_BROADCAST:
      return "broadcast";
    case MSG_BARRIER:
      return "barrier";
    case MSG_ABORT:
      return "abort";
    default:
      return "unknown message";
  }
}

// One call of a collective, as every rank sees it.
struct Op {
  MsgHeader header;
  char* buf;

  // What rank r sends to rank 0.
  size_t partBytes(int r) const {
    if (header.type == MSG_ALLGATHER) return header.bytes;
    return header.type == MSG_BROADCAST && r == header.root ? header.bytes : 0;
  }
  char* part(int r) const { return header.type == MSG_ALLGATHER ? buf + r * header.bytes : buf; }
  // What rank 0 sends back to every rank.
  size_t resultBytes(int nranks) const {
    if (header.type == MSG_ALLGATHER) return nranks * header.bytes;
    return header.type == MSG_BROADCAST ? header.bytes : 0;
  }
};

class TcpBootstrap : public llBootstrap {
 public:
  TcpBootstrap(int r, int n, int timeoutMs, std::vector<llSocket> peers)
      : timeoutMs_(timeoutMs), peers_(std::move(peers)) {
    rank = r;
    nranks = n;
  }

  llResult_t allGather(void* buf, size_t bytesPerRank) override {
    LL_REQUIRE(buf != nullptr || bytesPerRank == 0, llInvalidArgument, "bootstrap allGather: buf is NULL");
    LL_REQUIRE(bytesPerRank <= SIZE_MAX / nranks, llInvalidArgument,
               "bootstrap allGather: %zu bytes per rank overflow", bytesPerRank);
    return run(MSG_ALLGATHER, buf, bytesPerRank, 0);
  }

  llResult_t broadcast(void* buf, size_t bytes, int root) override {
    LL_REQUIRE(buf != nullptr || bytes == 0, llInvalidArgument, "bootstrap broadcast: buf is NULL");
    LL_REQUIRE(root >= 0 && root < nranks, llInvalidArgument,
               "bootstrap broadcast: root %d out of range for %d ranks", root, nranks);
    return run(MSG_BROADCAST, buf, bytes, root);
  }

  llResult_t barrier() override { return run(MSG_BARRIER, nullptr, 0, 0); }

 private:
  llResult_t run(uint32_t type, void* buf, size_t bytes, int root);
  llResult_t runHub(const Op& op, int64_t deadlineMs);
  llResult_t gatherPart(const Op& op, int r, int64_t deadlineMs);
  llResult_t runLeaf(const Op& op, int64_t deadlineMs);
  llResult_t receiveAbort(const Op& op, const MsgHeader& h, int64_t deadlineMs);
  void abortAll(uint32_t seq);

  int timeoutMs_;
  uint32_t seq_ = 0;
  // After a failure the ranks are no longer in step: every later call fails too.
  bool broken_ = false;
  // Rank 0: peers_[r] is rank r (peers_[0] unused); others: peers_[0] is rank 0.
  std::vector<llSocket> peers_;
};

llResult_t TcpBootstrap::run(uint32_t type, void* buf, size_t bytes, int root) {
  LL_REQUIRE(!broken_, llInvalidUsage, "bootstrap rank %d: unusable after an earlier failure", rank);
  if (nranks == 1) return llSuccess;
  Op op = {{type, seq_++, bytes, root, 0}, static_cast<char*>(buf)};
  int64_t deadline = llNowMs() + timeoutMs_;
  llResult_t res = rank == 0 ? runHub(op, deadline) : runLeaf(op, deadline);
  if (res != llSuccess) broken_ = true;
  return res;
}

// The failure at rank 0, as its last-error line, to every rank (the one that caused it may be alive, out
// of step, and waiting too).
void TcpBootstrap::abortAll(uint32_t seq) {
  char reason[kMaxAbortBytes];
  snprintf(reason, sizeof(reason), "%s", llLastError());
  MsgHeader h = {MSG_ABORT, seq, strlen(reason), 0, 0};
  int64_t deadline = llNowMs() + kAbortSendMs;
  for (int r = 1; r < nranks; r++) {
    // Best effort: a rank that cannot be told finds out from its own timeout.
    if (llSocketSend(peers_[r], &h, sizeof(h), deadline) == llSuccess)
      llSocketSend(peers_[r], reason, h.bytes, deadline);
  }
  // The original failure stays the last error, not a failed abort.
  llSetLastError("%s", reason);
}

llResult_t TcpBootstrap::gatherPart(const Op& op, int r, int64_t deadlineMs) {
  MsgHeader h;
  llSocket& s = peers_[r];
  LLCHECK(llSocketRecv(s, &h, sizeof(h), deadlineMs));
  const MsgHeader& mine = op.header;
  if (h.type != mine.type || h.seq != mine.seq || h.bytes != mine.bytes || h.root != mine.root) {
    LL_WARN(
        "bootstrap: %s called %s #%u (bytes %llu, root %d) while rank 0 called %s #%u (bytes %llu, root %d)",
        s.peer, opName(h.type), h.seq, (unsigned long long)h.bytes, h.root, opName(mine.type), mine.seq,
        (unsigned long long)mine.bytes, mine.root);
    return llInternalError;
  }
  return llSocketRecv(s, op.part(r), op.partBytes(r), deadlineMs);
}

llResult_t TcpBootstrap::runHub(const Op& op, int64_t deadlineMs) {
  for (int r = 1; r < nranks; r++) {
    llResult_t res = gatherPart(op, r, deadlineMs);
    if (res != llSuccess) {
      abortAll(op.header.seq);
      return res;
    }
  }
  size_t resultBytes = op.resultBytes(nranks);
  for (int r = 1; r < nranks; r++) {
    llResult_t res = llSocketSend(peers_[r], &op.header, sizeof(op.header), deadlineMs);
    if (res == llSuccess) res = llSocketSend(peers_[r], op.buf, resultBytes, deadlineMs);
    if (res != llSuccess) {
      abortAll(op.header.seq);
      return res;
    }
  }
  return llSuccess;
}

llResult_t TcpBootstrap::receiveAbort(const Op& op, const MsgHeader& h, int64_t deadlineMs) {
  char reason[kMaxAbortBytes + 1] = "";
  size_t len = std::min<uint64_t>(h.bytes, kMaxAbortBytes);
  LLCHECK(llSocketRecv(peers_[0], reason, len, deadlineMs));
  reason[len] = '\0';
  LL_WARN("bootstrap rank %d: %s #%u failed at rank 0: %s", rank, opName(op.header.type), op.header.seq,
          reason);
  return llRemoteError;
}

llResult_t TcpBootstrap::runLeaf(const Op& op, int64_t deadlineMs) {
  llSocket& hub = peers_[0];
  LLCHECK(llSocketSend(hub, &op.header, sizeof(op.header), deadlineMs));
  LLCHECK(llSocketSend(hub, op.part(rank), op.partBytes(rank), deadlineMs));
  MsgHeader h;
  LLCHECK(llSocketRecv(hub, &h, sizeof(h), deadlineMs + kAnswerSlackMs));
  if (h.type == MSG_ABORT) return receiveAbort(op, h, deadlineMs + kAnswerSlackMs);
  const MsgHeader& mine = op.header;
  // Rank 0 checked our header before answering, so a different answer is a protocol bug.
  LL_REQUIRE(h.type == mine.type && h.seq == mine.seq && h.bytes == mine.bytes && h.root == mine.root,
             llInternalError, "bootstrap rank %d: %s answered %s #%u to our %s #%u", rank, hub.peer,
             opName(h.type), h.seq, opName(mine.type), mine.seq);
  return llSocketRecv(hub, op.buf, op.resultBytes(nranks), deadlineMs);
}

// Rank 0: listens (on the id's address for DIRECT, else on this host's), tells the root where (RELAY),
// then waits for every other rank's hello.
llResult_t openHub(const llUniqueIdInfo& info, int nranks, int64_t deadlineMs, std::vector<llSocket>* peers) {
  bool direct = info.mode == LL_ID_DIRECT;
  llSocketAddr addr, bound;
  if (direct)
    addr = info.addr;
  else
    LLCHECK(llSocketFindIfAddr(&addr));
  llSocket listener;
  // DIRECT's port may still be held by the previous communicator on it: retry until the deadline.
  LLCHECK(llSocketListen(addr, direct ? deadlineMs : llNowMs(), &listener, &bound));
  if (!direct) {
    llHello h = {};
    h.rank = 0;
    h.nranks = nranks;
    h.secret = info.secret;
    h.hub = bound;
    llSocket root;
    llSocketAddr unused;
    LLCHECK(llRendezvousJoin(info.addr, "rendezvous root", h, deadlineMs, &root, &unused));
  }
  std::vector<llHello> hellos;
  LLCHECK(llRendezvousServe(listener, info.secret, nranks, 1, deadlineMs, peers, &hellos));
  // Nobody else may join this communicator; a closed port tells a late rank so at once.
  listener.close();
  return llRendezvousAccept(*peers, 1, bound, deadlineMs);
}

// Rank r > 0: learns where rank 0's hub is (RELAY: from the root), then joins it.
llResult_t joinHub(const llUniqueIdInfo& info, int rank, int nranks, int64_t deadlineMs,
                   std::vector<llSocket>* peers) {
  llHello h = {};
  h.rank = rank;
  h.nranks = nranks;
  h.secret = info.secret;
  llSocketAddr hub = info.addr, unused;
  if (info.mode == LL_ID_RELAY) {
    llSocket root;
    LLCHECK(llRendezvousJoin(info.addr, "rendezvous root", h, deadlineMs, &root, &hub));
  }
  peers->resize(1);
  return llRendezvousJoin(hub, "rank 0", h, deadlineMs, &(*peers)[0], &unused);
}

}  // namespace

llResult_t llBootstrapTcpCreate(const llUniqueId& id, int rank, int nranks, int timeoutMs,
                                llBootstrap** out) {
  LL_REQUIRE(out != nullptr, llInvalidArgument, "bootstrap: out is NULL");
  LL_REQUIRE(nranks >= 1 && rank >= 0 && rank < nranks, llInvalidArgument,
             "bootstrap: rank %d out of range for %d ranks", rank, nranks);
  LL_REQUIRE(timeoutMs > 0, llInvalidArgument, "bootstrap: timeout %d ms is not positive", timeoutMs);
  llUniqueIdInfo info;
  LLCHECK(llUniqueIdDecode(id, &info));
  int64_t start = llNowMs();
  std::vector<llSocket> peers;
  // One rank exchanges with nobody: no socket at all.
  if (nranks > 1)
    LLCHECK(rank == 0 ? openHub(info, nranks, start + timeoutMs, &peers)
                      : joinHub(info, rank, nranks, start + timeoutMs, &peers));
  TcpBootstrap* b = new (std::nothrow) TcpBootstrap(rank, nranks, timeoutMs, std::move(peers));
  LL_REQUIRE(b != nullptr, llSystemError, "bootstrap: out of memory");
  LL_INFO(LL_BOOTSTRAP, "bootstrap rank %d of %d connected in %lld ms", rank, nranks,
          (long long)(llNowMs() - start));
  *out = b;
  return llSuccess;
}
