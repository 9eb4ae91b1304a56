// ibgda host setup (transport/ibgda/setup.h) between processes: each rank is a forked child with a TCP
// bootstrap and the software mlx5 device (LLEP_IB_DEVICE=model), whose contexts reach each other over a
// SocketWire in a per-case job directory (LLEP_MODEL_JOB). After llIbgdaConnect every QP must be in RTS with
// the peer's QPN and LID, and RDMA writes and fetch-adds posted with ibgda_qp.h to every rank (self included)
// must land exactly; a bad rkey must surface as llRemoteError naming the peer; disconnect must leave no
// descriptor and no socket file. The same over the model's Ethernet port (LLEP_MODEL_LINK=eth, RoCE): QPs
// address peers by GID and MAC, the GID index is chosen (or LLEP_IB_GID_INDEX) as on a real port, and a wrong
// MAC loses every packet, which surfaces as llRemoteError naming the peer.
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/unique_id.h"
#include "param.h"
#include "test/cpu/fork_ranks.h"
#include "test/harness.h"
#include "transport/ibgda/model/provider.h"
#include "transport/ibgda/prm_cmd.h"
#include "transport/ibgda/roce.h"
#include "transport/ibgda/setup.h"

namespace {

constexpr int kTimeoutMs = 10000;
constexpr int kChildLimitMs = 20000;

using lltest::openFds;

// Entries of a directory other than . and ..
int entries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

int runChildren(int count, const std::function<void(int)>& fn) { return lltest::runChildren(count, fn, kChildLimitMs); }

// A job: a fresh directory for the ranks' sockets and a unique id made before the fork.
struct Job {
  Job() {
    char tmpl[] = "/tmp/llep-setup-XXXXXX";
    EXPECT(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    EXPECT_OK(llGetUniqueId(&id));
  }
  ~Job() { rmdir(dir.c_str()); }
  std::string dir;
  llUniqueId id;
};

// The model port a rank's process uses: LLEP_MODEL_LINK, and LLEP_IB_GID_INDEX and LLEP_IB_TC (nullptr: unset).
struct Link {
  const char* layer = "ib";
  const char* gidIndex = nullptr;
  const char* tc = nullptr;
};

void setOrUnset(const char* name, const char* value) {
  if (value) setenv(name, value, 1);
  else unsetenv(name);
}

// What every rank does first: the model device, this job's wire, its rank, a bootstrap and the verbs table.
// Parameters are read once per process: each child sets its own before the first verbs call, and the
// parent, which forks every case's children, reads none of them (checked: a value read earlier would stick).
struct RankEnv {
  RankEnv(const Job& job, int rank, int nranks, const Link& link = Link{}) {
    setenv("LLEP_IB_DEVICE", "model", 1);
    setenv("LLEP_MODEL_JOB", job.dir.c_str(), 1);
    setenv("LLEP_MODEL_LINK", link.layer, 1);
    setOrUnset("LLEP_IB_GID_INDEX", link.gidIndex);
    setOrUnset("LLEP_IB_TC", link.tc);
    setenv("RANK", std::to_string(rank).c_str(), 1);
    unsetenv("LLEP_IB_HCA");
    EXPECT_MSG(std::strcmp(llParamModelLink(), link.layer) == 0, "LLEP_MODEL_LINK is '%s'", llParamModelLink());
    EXPECT_EQ(llParamIbGidIndex(), link.gidIndex ? std::atoll(link.gidIndex) : -1);
    EXPECT_EQ(llParamIbTc(), link.tc ? std::atoll(link.tc) : 0);
    EXPECT_OK(llBootstrapTcpCreate(job.id, rank, nranks, kTimeoutMs, &bs));
    EXPECT_OK(llVerbsLoad(&v));
  }
  ~RankEnv() { delete bs; }
  llBootstrap* bs = nullptr;
  const llVerbs* v = nullptr;
};

// The registered buffer of one rank:
//   [0, R * kChunk)       inbound writes, slot s from rank s
//   src                   outbound data, kChunk per destination
//   counters              8 bytes: the shared counter; then 8 per source rank
//   results               fetch-add results, 2 per destination
constexpr size_t kChunk = 1000;  // not a multiple of anything in particular
constexpr size_t kBufBytes = 64 * 1024;

struct Buffer {
  explicit Buffer(int R) : R(R), p(static_cast<uint8_t*>(std::aligned_alloc(4096, kBufBytes)), &std::free) {
    std::memset(p.get(), 0, kBufBytes);
  }
  uint64_t addr(size_t off) const { return (uint64_t)(uintptr_t)p.get() + off; }
  size_t slot(int s) const { return (size_t)s * kChunk; }
  size_t src(int d) const { return (size_t)R * kChunk + (size_t)d * kChunk; }
  size_t counter(int i) const { return (size_t)2 * R * kChunk + 8 * (size_t)i; }  // i = 0 shared, 1 + s
  size_t result(int d, int k) const { return counter(1 + R) + 16 * (size_t)d + 8 * (size_t)k; }
  uint64_t u64(size_t off) const {
    uint64_t v;
    std::memcpy(&v, p.get() + off, 8);
    return v;
  }
  int R;
  std::unique_ptr<uint8_t, decltype(&std::free)> p;
};

uint8_t pattern(int from, int to, int round, size_t i) {
  return (uint8_t)(i * 13 + (i >> 8) + from * 31 + to * 5 + round * 3 + 1);
}

// A context's MAC on the model's Ethernet port (provider.h).
std::vector<uint8_t> macOf(uint32_t lid) { return {0x02, 'l', 0, 0, (uint8_t)(lid >> 8), (uint8_t)lid}; }

// The RoCE address path towards peer p: its GID and MAC, our GID index, hop limit 64, LLEP_IB_TC, and for a
// RoCE v2 source the UDP source port (0xC000-0xFFFF) and DSCP; the QP reaches the peer's context.
void expectRocePath(const llIbgdaEndpoints& ep, int p, const llnic::ModelQpView& view) {
  ibv_gid_entry source{};
  EXPECT_EQ(ep.v->queryGidEx(ep.context, 1, (uint32_t)ep.gidIndex, &source, 0), 0);
  const uint32_t tc = (uint32_t)llParamIbTc();
  EXPECT(view.grh);
  EXPECT_EQ(view.srcAddrIndex, (uint32_t)ep.gidIndex);
  EXPECT(std::memcmp(view.rgid, ep.peers[p].gid, 16) == 0);
  EXPECT(std::vector<uint8_t>(view.rmac, view.rmac + 6) == macOf(1 + 16 * p));
  EXPECT_EQ(view.hopLimit, 64u);
  EXPECT_EQ(view.tclass, tc);
  const bool v2 = source.gid_type == IBV_GID_TYPE_ROCE_V2;
  EXPECT_EQ(view.dscp, v2 ? tc >> 2 : 0u);
  EXPECT(v2 ? view.udpSport >= 0xc000 : view.udpSport == 0);
  EXPECT_EQ(view.rlid, 0u);
  EXPECT_EQ(view.destLid, (uint32_t)(1 + 16 * p));  // the first context of rank p
}

// Every QP of this rank is in RTS, connected to the QP the peer created for us, at the peer's address (IB:
// its LID; RoCE: expectRocePath), with remote write and atomic rights.
void expectRts(const llIbgdaEndpoints& ep) {
  EXPECT_EQ((int)ep.qp.size(), ep.nranks);
  llnic::NicModel* nic = llnic::modelNic(ep.context);
  EXPECT(nic != nullptr);
  for (int p = 0; p < ep.nranks; p++) {
    llnic::Qp* q = nic->qp(ep.qp[p].qpn);
    EXPECT_MSG(q && q->state() == llnic::QpState::kRts, "QP to peer %d not in RTS", p);
    llnic::ModelQpView view;
    EXPECT(llnic::modelQpView(ep.context, ep.qp[p].qpn, &view));
    EXPECT_EQ(view.remoteQpn, ep.peers[p].qpn);
    if (ep.roce) {
      expectRocePath(ep, p, view);
    } else {
      EXPECT_EQ(view.rlid, (uint32_t)ep.peers[p].lid);
      EXPECT_EQ(view.rlid, (uint32_t)(1 + 16 * p));  // the first context of rank p
    }
    EXPECT(view.remoteWrite && view.remoteRead && view.remoteAtomic);
    EXPECT_EQ(view.atomicMode, kLlPrmQpcAtomicModeUpTo8B);
    EXPECT_EQ(view.sqAddr, (uint64_t)(uintptr_t)ep.qp[p].sq);
    EXPECT_EQ(view.logSqBbs, ep.qp[p].logSqBbs);
    EXPECT_EQ(view.cqnSnd, ep.cqn[p]);
    EXPECT_EQ(view.port, 1u);
    llnic::ModelCqView cq;
    EXPECT(llnic::modelCqView(ep.context, ep.cqn[p], &cq));
    EXPECT_EQ(cq.ringAddr, (uint64_t)(uintptr_t)ep.qp[p].cq);
    EXPECT_EQ(cq.dbrecAddr, (uint64_t)(uintptr_t)ep.qp[p].cqDbrec);
  }
}

// `rounds` times: to every rank, an RDMA write of kChunk bytes into our slot there, a fetch-add of
// rank + 1 to its shared counter and one of 7 * (rank + 1) + round to our counter there; quiet each.
void traffic(llIbgdaEndpoints& ep, Buffer& buf, int rounds) {
  const int me = ep.rank, R = ep.nranks;
  const uint32_t lkey = ep.mr->lkey;
  for (int round = 0; round < rounds; round++) {
    for (int d = 0; d < R; d++)
      for (size_t i = 0; i < kChunk; i++) buf.p.get()[buf.src(d) + i] = pattern(me, d, round, i);
    for (int d = 0; d < R; d++) {
      const llIbgdaPeer& peer = ep.peers[d];
      llIbgdaPostWrite(&ep.qp[d], {buf.addr(buf.src(d)), lkey}, kChunk, {peer.base + buf.slot(me), peer.rkey});
      llIbgdaPostFetchAdd64(&ep.qp[d], (uint64_t)(me + 1), {buf.addr(buf.result(d, 0)), lkey},
                            {peer.base + buf.counter(0), peer.rkey});
      llIbgdaPostFetchAdd64(&ep.qp[d], (uint64_t)(7 * (me + 1) + round), {buf.addr(buf.result(d, 1)), lkey},
                            {peer.base + buf.counter(1 + me), peer.rkey});
    }
    for (int d = 0; d < R; d++) EXPECT_OK(llIbgdaQuietPeer(&ep, d));
    // Our own counter at d went from the sum of the earlier rounds' adds.
    uint64_t before = 0;
    for (int k = 0; k < round; k++) before += 7 * (me + 1) + k;
    for (int d = 0; d < R; d++) EXPECT_EQ(buf.u64(buf.result(d, 1)), before);
  }
}

void expectArrived(const llIbgdaEndpoints& ep, const Buffer& buf, int rounds) {
  const int me = ep.rank, R = ep.nranks;
  for (int s = 0; s < R; s++)
    for (size_t i = 0; i < kChunk; i++)
      EXPECT_MSG(buf.p.get()[buf.slot(s) + i] == pattern(s, me, rounds - 1, i), "byte %zu from rank %d", i, s);
  EXPECT_EQ(buf.u64(buf.counter(0)), (uint64_t)rounds * R * (R + 1) / 2);
  for (int s = 0; s < R; s++) {
    uint64_t want = 0;
    for (int k = 0; k < rounds; k++) want += 7 * (s + 1) + k;
    EXPECT_EQ(buf.u64(buf.counter(1 + s)), want);
  }
}

std::string socketPath(const std::string& dir, int rank) { return dir + "/rank" + std::to_string(rank) + ".sock"; }

// The GID rank p is known by through entry `index` of the model's table: fe80::02:6c:<LID>:<pid> (0, 1) or
// ::ffff:10.108.<LID> (2, 3); the pid is not known here.
void expectPeerGid(const llIbgdaEndpoints& ep, int p, int index) {
  const uint8_t* g = ep.peers[p].gid;
  const int lid = 1 + 16 * p;
  if (index < 2)
    EXPECT(g[0] == 0xfe && g[1] == 0x80 && g[8] == 0x02 && g[9] == 'l' && (g[10] << 8 | g[11]) == lid);
  else
    EXPECT(g[10] == 0xff && g[11] == 0xff && g[12] == 10 && g[13] == 108 && (g[14] << 8 | g[15]) == lid);
}

// The whole cycle for one rank: connect, RTS, traffic, check, disconnect, nothing left behind. RoCE: the GID
// index is LLEP_IB_GID_INDEX, or the chooser's (3, the RoCE v2 IPv4 entry), and peers are known by that GID.
void connectAndTalk(const Job& job, int rank, int nranks, int rounds, const Link& link) {
  RankEnv env(job, rank, nranks, link);
  const int fds = openFds();
  Buffer buf(nranks);
  llIbgdaEndpoints ep;
  EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
  EXPECT_EQ(ep.rank, rank);
  const bool roce = std::strcmp(link.layer, "eth") == 0;
  EXPECT_EQ(ep.roce, roce);
  if (roce) {
    EXPECT_EQ(ep.gidIndex, link.gidIndex ? std::atoi(link.gidIndex) : 3);
    for (int p = 0; p < nranks; p++) expectPeerGid(ep, p, ep.gidIndex);
  }
  EXPECT(access(socketPath(job.dir, rank).c_str(), F_OK) == 0);
  expectRts(ep);
  EXPECT_OK(env.bs->barrier());
  traffic(ep, buf, rounds);
  EXPECT_OK(env.bs->barrier());  // everyone's operations have landed everywhere
  expectArrived(ep, buf, rounds);
  EXPECT_OK(llIbgdaDisconnect(&ep));
  EXPECT(ep.context == nullptr && ep.qp.empty());
  EXPECT_OK(llIbgdaDisconnect(&ep));  // idempotent
  EXPECT_EQ(openFds(), fds);
  EXPECT(access(socketPath(job.dir, rank).c_str(), F_OK) != 0);
}

void runJob(int nranks, int rounds, const Link& link = Link{}) {
  Job job;
  EXPECT_EQ(runChildren(nranks, [&](int r) { connectAndTalk(job, r, nranks, rounds, link); }), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

}  // namespace

// Two ranks: QPs to self and peer reach RTS; writes and fetch-adds land exactly (the 96 WQEs per QP wrap the
// 64-WQEBB ring).
LL_TEST(two_ranks_connect_write_fetch_add) { runJob(2, 32); }

// Four ranks, every pair in both directions.
LL_TEST(four_ranks_connect_write_fetch_add) { runJob(4, 8); }

// An RDMA write with a bad rkey fails on that QP only: llRemoteError naming the peer and the syndrome, sticky;
// the target's bytes stay untouched, and the other QPs go on working.
LL_TEST(bad_rkey_is_remote_error_naming_peer) {
  Job job;
  auto rank = [&](int r) {
    RankEnv env(job, r, 2);
    const int fds = openFds();
    Buffer buf(2);
    llIbgdaEndpoints ep;
    EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
    std::memset(buf.p.get() + buf.src(0), 0xab, 2 * kChunk);
    // First rank 1 -> rank 0 over the pair that will break (a QP in error answers nothing, in either
    // direction), then the bad write.
    if (r == 1) {
      llIbgdaPostWrite(&ep.qp[0], {buf.addr(buf.src(0)), ep.mr->lkey}, kChunk,
                       {ep.peers[0].base + buf.slot(1), ep.peers[0].rkey});
      EXPECT_OK(llIbgdaQuietPeer(&ep, 0));
    }
    EXPECT_OK(env.bs->barrier());
    if (r == 0) {
      const llIbgdaPeer& peer = ep.peers[1];
      llIbgdaPostWrite(&ep.qp[1], {buf.addr(buf.src(1)), ep.mr->lkey}, kChunk,
                       {peer.base + buf.slot(0), peer.rkey ^ 0x5a00});
      EXPECT_EQ(llIbgdaQuietPeer(&ep, 1), llRemoteError);
      const std::string msg = llGetLastError(nullptr);
      EXPECT_MSG(msg.find("peer 1") != std::string::npos, "%s", msg.c_str());
      EXPECT_MSG(msg.find("syndrome 0x13 (remote access error)") != std::string::npos, "%s", msg.c_str());
      EXPECT_EQ(ep.qp[1].errSyndrome, (uint32_t)kLlMlx5SyndRemoteAccessErr);
      // Sticky: a later quiet on that QP reports it again; the QP to ourselves is unaffected.
      EXPECT_EQ(llIbgdaQuietPeer(&ep, 1), llRemoteError);
      llIbgdaPostWrite(&ep.qp[0], {buf.addr(buf.src(0)), ep.mr->lkey}, kChunk, {ep.peers[0].base, ep.peers[0].rkey});
      EXPECT_OK(llIbgdaQuietPeer(&ep, 0));
    }
    EXPECT_OK(env.bs->barrier());
    for (size_t i = 0; i < kChunk; i++) {
      // Slot 0: rank 0 wrote its own; rank 1's was the bad-rkey target and stays untouched.
      EXPECT_EQ((int)buf.p.get()[buf.slot(0) + i], r == 0 ? 0xab : 0);
      if (r == 0) EXPECT_EQ((int)buf.p.get()[buf.slot(1) + i], 0xab);
    }
    EXPECT_OK(llIbgdaDisconnect(&ep));
    EXPECT_EQ(openFds(), fds);
  };
  EXPECT_EQ(runChildren(2, rank), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

// Rank 0 posts to rank 1 something rank 1's NIC must refuse or cannot take, then quiets: the error CQE comes
// back as llRemoteError whose message names the peer and the syndrome. breakIt runs on rank 0 after the
// connection and returns the WQE to post.
void expectErrorNamingPeer(const std::function<void(llIbgdaEndpoints&, Buffer&)>& breakAndPost,
                           uint32_t syndrome, const char* name) {
  Job job;
  auto rank = [&](int r) {
    RankEnv env(job, r, 2);
    const int fds = openFds();
    Buffer buf(2);
    llIbgdaEndpoints ep;
    EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
    EXPECT_OK(env.bs->barrier());
    if (r == 0) {
      breakAndPost(ep, buf);
      EXPECT_EQ(llIbgdaQuietPeer(&ep, 1), llRemoteError);
      const std::string msg = llGetLastError(nullptr);
      EXPECT_MSG(msg.find("peer 1") != std::string::npos, "%s", msg.c_str());
      EXPECT_MSG(msg.find(name) != std::string::npos, "%s", msg.c_str());
      EXPECT_EQ(ep.qp[1].errSyndrome, syndrome);
    }
    EXPECT_OK(env.bs->barrier());
    for (size_t i = 0; i < kChunk; i++) EXPECT_EQ((int)buf.p.get()[buf.slot(0) + i], 0);  // nothing arrived
    EXPECT_OK(llIbgdaDisconnect(&ep));
    EXPECT_EQ(openFds(), fds);
  };
  EXPECT_EQ(runChildren(2, rank), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

// A write that runs past the end of the peer's registered buffer: the peer's NIC refuses it.
LL_TEST(out_of_bounds_is_remote_error_naming_peer) {
  expectErrorNamingPeer(
      [](llIbgdaEndpoints& ep, Buffer& buf) {
        const llIbgdaPeer& peer = ep.peers[1];
        llIbgdaPostWrite(&ep.qp[1], {buf.addr(buf.src(1)), ep.mr->lkey}, kChunk,
                         {peer.base + kBufBytes - kChunk / 2, peer.rkey});
      },
      kLlMlx5SyndRemoteAccessErr, "syndrome 0x13 (remote access error)");
}

// A QP that has left RTS (as after a reset; here through the software device's own control) cannot send:
// its first WQE completes with a local QP operation error.
LL_TEST(qp_not_in_rts_is_error_naming_peer) {
  expectErrorNamingPeer(
      [](llIbgdaEndpoints& ep, Buffer& buf) {
        EXPECT(llnic::modelNic(ep.context)->modifyQp(ep.qp[1].qpn, llnic::QpState::kReset) == llnic::Status::kOk);
        llIbgdaPostWrite(&ep.qp[1], {buf.addr(buf.src(1)), ep.mr->lkey}, kChunk, {ep.peers[1].base + buf.slot(0), ep.peers[1].rkey});
      },
      kLlMlx5SyndLocalQpOpErr, "syndrome 0x2 (local QP operation error)");
}

// Disconnect then connect again in the same processes: new QPs, same LIDs' ranks, traffic still exact, and
// nothing left after either disconnect.
LL_TEST(reconnect_after_disconnect) {
  Job job;
  auto rank = [&](int r) {
    RankEnv env(job, r, 2);
    const int fds = openFds();
    for (int cycle = 0; cycle < 2; cycle++) {
      Buffer buf(2);
      llIbgdaEndpoints ep;
      EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
      EXPECT_OK(env.bs->barrier());
      traffic(ep, buf, 3);
      EXPECT_OK(env.bs->barrier());
      expectArrived(ep, buf, 3);
      EXPECT_OK(llIbgdaDisconnect(&ep));
      EXPECT_EQ(openFds(), fds);
      EXPECT(access(socketPath(job.dir, r).c_str(), F_OK) != 0);
      EXPECT_OK(env.bs->barrier());  // nobody connects to a rank that is still tearing down
    }
  };
  EXPECT_EQ(runChildren(2, rank), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

// A device name that does not exist fails before anything is created: llSystemError naming what was found,
// and no descriptor or socket file left. One rank (its own bootstrap).
LL_TEST(unknown_hca_fails_cleanly) {
  Job job;
  auto rank = [&](int r) {
    RankEnv env(job, r, 1);
    const int fds = openFds();
    Buffer buf(1);
    llIbgdaEndpoints ep;
    llIbgdaSetupOptions o;
    o.hca = "mlx5_nope";
    EXPECT_EQ(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, &o, &ep), llSystemError);
    const std::string msg = llGetLastError(nullptr);
    EXPECT_MSG(msg.find("mlx5_nope") != std::string::npos && msg.find("llep_model0") != std::string::npos, "%s",
               msg.c_str());
    EXPECT(ep.context == nullptr);
    EXPECT_OK(llIbgdaDisconnect(&ep));
    EXPECT_EQ(openFds(), fds);
    // A single rank: its only QP is the loopback one.
    EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
    expectRts(ep);
    traffic(ep, buf, 2);
    expectArrived(ep, buf, 2);
    EXPECT_OK(llIbgdaDisconnect(&ep));
    EXPECT_EQ(openFds(), fds);
  };
  EXPECT_EQ(runChildren(1, rank), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

// ---- RoCE (the model's Ethernet port) ----

ibv_gid_entry gidEntry(uint32_t index, uint32_t type, std::initializer_list<uint8_t> raw) {
  ibv_gid_entry e{};
  e.gid_index = index;
  e.gid_type = type;
  std::copy(raw.begin(), raw.end(), e.gid.raw);
  return e;
}

// The auto choice over hand-made tables: RoCE v2 with an IPv4 address before RoCE v2 with a global IPv6 one;
// never RoCE v1, IB, link-local (all of fe80::/10) or zero entries; the first among equals; -1 when nothing
// qualifies.
LL_TEST(gid_choice_prefers_roce_v2_ipv4) {
  const uint32_t v1 = IBV_GID_TYPE_ROCE_V1, v2 = IBV_GID_TYPE_ROCE_V2, ib = IBV_GID_TYPE_IB;
  const std::initializer_list<uint8_t> linkLocal = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 2, 'l', 0, 1, 1, 2, 3, 4};
  const std::initializer_list<uint8_t> linkLocalHigh = {0xfe, 0xbf, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
  const std::initializer_list<uint8_t> ipv4 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7};
  const std::initializer_list<uint8_t> ipv4b = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 8};
  const std::initializer_list<uint8_t> global6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::initializer_list<uint8_t> zero = {};
  // A ConnectX port's usual table: the RoCE v2 IPv4 entry wins over the IPv6 one after it.
  std::vector<ibv_gid_entry> t = {gidEntry(0, v1, linkLocal), gidEntry(1, v2, linkLocal), gidEntry(2, v1, ipv4),
                                  gidEntry(3, v2, ipv4),      gidEntry(4, v2, global6),  gidEntry(5, v2, ipv4b)};
  EXPECT_EQ(llIbgdaChooseGid(t.data(), t.size()), 3);
  std::reverse(t.begin(), t.end());
  EXPECT_EQ(llIbgdaChooseGid(t.data(), t.size()), 5);
  // No IPv4: the global IPv6 entry, not the link-local ones.
  t = {gidEntry(0, v2, linkLocal), gidEntry(1, v2, linkLocalHigh), gidEntry(2, v1, ipv4), gidEntry(7, v2, global6)};
  EXPECT_EQ(llIbgdaChooseGid(t.data(), t.size()), 7);
  // Nothing usable.
  t = {gidEntry(0, v2, zero), gidEntry(1, v1, ipv4), gidEntry(2, v2, linkLocal), gidEntry(3, ib, ipv4),
       gidEntry(4, ib, global6)};
  EXPECT_EQ(llIbgdaChooseGid(t.data(), t.size()), -1);
  EXPECT_EQ(llIbgdaChooseGid(nullptr, 0), -1);
}

// Two ranks over RoCE: each picks entry 3 (RoCE v2, ::ffff:10.108.<LID>); QPs to self and peer reach RTS with
// the peer's GID and MAC; writes and fetch-adds land exactly.
LL_TEST(roce_two_ranks_connect_write_fetch_add) { runJob(2, 32, Link{"eth"}); }

// Four ranks over RoCE, every pair in both directions.
LL_TEST(roce_four_ranks_connect_write_fetch_add) { runJob(4, 8, Link{"eth"}); }

// LLEP_IB_GID_INDEX=1 (RoCE v2 link-local, which the auto choice skips) and LLEP_IB_TC=106: the QPs leave from
// entry 1, peers are known by their fe80:: GIDs, every path carries traffic class 106 and DSCP 26.
LL_TEST(roce_gid_index_and_tc_honoured) { runJob(2, 4, Link{"eth", "1", "106"}); }

// An LLEP_IB_GID_INDEX past the table (8 entries) or naming an empty entry fails llIbgdaConnect before any QP
// exists: llInvalidArgument, one line naming the index and the table, nothing left behind.
LL_TEST(roce_bad_gid_index_fails_cleanly) {
  struct Case {
    const char* index;
    const char* says;
  };
  for (Case c : {Case{"8", "is outside the GID table of llep_model0 port 1 (8 entries)"},
                 Case{"-2", "is outside the GID table of llep_model0 port 1 (8 entries)"},
                 Case{"5", "names an empty entry of the GID table of llep_model0 port 1"}}) {
    Job job;
    auto rank = [&](int r) {
      RankEnv env(job, r, 1, Link{"eth", c.index});
      const int fds = openFds();
      Buffer buf(1);
      llIbgdaEndpoints ep;
      EXPECT_EQ(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep), llInvalidArgument);
      const std::string msg = llGetLastError(nullptr);
      const std::string named = std::string("LLEP_IB_GID_INDEX=") + c.index + " " + c.says;
      EXPECT_MSG(msg.find(named) != std::string::npos && msg.find('\n') == std::string::npos, "%s", msg.c_str());
      EXPECT(ep.context == nullptr && ep.qp.empty());
      EXPECT_EQ(openFds(), fds);
    };
    EXPECT_EQ(runChildren(1, rank), 0);
    EXPECT_EQ(entries(job.dir), 0);
  }
}

// A stale neighbour entry on rank 0 gives its QP to rank 1 a MAC that is not rank 1's. As on a NIC, RTR accepts
// the path and its packets go nowhere: the first write completes with transport retries exceeded, reported as
// llRemoteError naming the peer and its GID; rank 1's bytes stay untouched, and rank 0's QP to itself works.
LL_TEST(roce_wrong_mac_is_remote_error_naming_peer) {
  Job job;
  const uint8_t stale[6] = {0x02, 0x6c, 0, 0, 0xde, 0xad};
  auto rank = [&](int r) {
    RankEnv env(job, r, 2, Link{"eth"});
    if (r == 0) llnic::modelSetStaleMac(17, stale);  // rank 1's first context
    const int fds = openFds();
    Buffer buf(2);
    llIbgdaEndpoints ep;
    EXPECT_OK(llIbgdaConnect(env.v, env.bs, buf.p.get(), kBufBytes, nullptr, &ep));
    std::memset(buf.p.get() + buf.src(0), 0xab, 2 * kChunk);
    if (r == 0) {
      llnic::ModelQpView view;
      EXPECT(llnic::modelQpView(ep.context, ep.qp[1].qpn, &view));
      EXPECT(std::memcmp(view.rmac, stale, 6) == 0);
      EXPECT_EQ(view.destLid, 0u);
      const llIbgdaPeer& peer = ep.peers[1];
      llIbgdaPostWrite(&ep.qp[1], {buf.addr(buf.src(1)), ep.mr->lkey}, kChunk, {peer.base + buf.slot(0), peer.rkey});
      EXPECT_EQ(llIbgdaQuietPeer(&ep, 1), llRemoteError);
      const std::string msg = llGetLastError(nullptr);
      for (const char* part : {"peer 1", "syndrome 0x15 (transport retries exceeded)",
                               "RoCE: no answer from GID ::ffff:10.108.0.17 to our GID index 3"})
        EXPECT_MSG(msg.find(part) != std::string::npos, "%s", msg.c_str());
      llIbgdaPostWrite(&ep.qp[0], {buf.addr(buf.src(0)), ep.mr->lkey}, kChunk, {ep.peers[0].base, ep.peers[0].rkey});
      EXPECT_OK(llIbgdaQuietPeer(&ep, 0));
      EXPECT_EQ((int)buf.p.get()[buf.slot(0)], 0xab);
    }
    EXPECT_OK(env.bs->barrier());
    if (r == 1)
      for (size_t i = 0; i < kChunk; i++) EXPECT_EQ((int)buf.p.get()[buf.slot(0) + i], 0);
    EXPECT_OK(llIbgdaDisconnect(&ep));
    EXPECT_EQ(openFds(), fds);
  };
  EXPECT_EQ(runChildren(2, rank), 0);
  EXPECT_EQ(entries(job.dir), 0);
}

LL_TEST_MAIN()
