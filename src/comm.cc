// Communicator setup over an established bootstrap, and its collective teardown.
#include "comm.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "buffer_layout.h"
#include "calls.h"
#include "checks.h"
#include "param.h"
#include "transport/p2p/p2p.h"
#ifdef LLEP_HAVE_IBGDA
#include "transport/ibgda/transport.h"
#endif

namespace {

constexpr uint64_t kPeerInfoMagic = 0x6c6c65702d706931ull;  // "llep-pi1"

uint64_t fnv1a(const char* s, uint64_t h = 0xcbf29ce484222325ull) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

// Ranks with equal hashes share a machine. The boot id tells apart containers that share a host name.
uint64_t machineHash() {
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  uint64_t h = fnv1a(host);
  FILE* f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f) {
    char boot[64] = "";
    if (fgets(boot, sizeof(boot), f)) h = fnv1a(boot, h);
    fclose(f);
  }
  return h;
}

// Ranks with equal hashes count as one node for routing: the machine, or with LLEP_LOCAL_RANKS=n one
// simulated node of n ranks (tests of the inter-node path on one machine).
uint64_t hostHash(int rank, uint64_t machine) {
  int64_t local = llParamLocalRanks();
  return local > 0 ? machine + (uint64_t)(rank / local) * 0x9e3779b97f4a7c15ull : machine;
}

// Every rank checks the same gathered table, so all of them fail alike on a disagreement.
llResult_t checkAgreement(const llComm* comm) {
  const llCommConfig& a = comm->peers[0].config;
  for (int r = 1; r < comm->nranks; r++) {
    const llCommConfig& b = comm->peers[r].config;
    const char* field = a.maxTokensPerRank != b.maxTokensPerRank ? "maxTokensPerRank"
                        : a.hidden != b.hidden                   ? "hidden"
                        : a.numExperts != b.numExperts           ? "numExperts"
                        : a.maxTopk != b.maxTopk                 ? "maxTopk"
                        : a.bufferBytes != b.bufferBytes         ? "bufferBytes"
                                                                 : nullptr;
    LL_REQUIRE(field == nullptr, llInvalidUsage, "config.%s differs between rank 0 and rank %d: all ranks must pass the same shape",
               field, r);
    LL_REQUIRE(comm->peers[r].nranks == comm->nranks && comm->peers[r].rank == r &&
                   comm->peers[r].magic == kPeerInfoMagic,
               llInternalError, "rank %d published an inconsistent record", r);
  }
  return llSuccess;
}

// What each rank tells the others before any transport connects, so that all of them decide alike.
enum RouteNeed : int { kP2pOnly = 0, kNeedsIbgda = 1, kIbgdaUnusable = 2, kUnreachable = 3 };

// This rank's route kind to each peer: p2p where allowed and reachable, else ibgda where allowed.
RouteNeed planRoutes(const llComm* comm, std::vector<bool>* p2p, int* unreachable, std::string* why) {
  RouteNeed need = kP2pOnly;
  for (int r = 0; r < comm->nranks; r++) {
    bool self = r == comm->rank;  // a rank's own buffer is always reached directly
    (*p2p)[r] = self || ((comm->config.transports & LL_TRANSPORT_P2P) && llP2pCanReach(comm, comm->peers[r]));
    if ((*p2p)[r]) continue;
    if (!(comm->config.transports & LL_TRANSPORT_IBGDA)) {
      *unreachable = r;
      return kUnreachable;
    }
    need = kNeedsIbgda;
  }
  if (need != kNeedsIbgda) return need;
#ifdef LLEP_HAVE_IBGDA
  return llIbgdaTransportUsable(why) ? kNeedsIbgda : kIbgdaUnusable;
#else
  *why = "this llep was built without rdma-core's headers (libibverbs-dev)";
  return kIbgdaUnusable;
#endif
}

llResult_t connectPeers(llComm* comm) {
  comm->routes.assign(comm->nranks, llRoute{});
  std::vector<bool> p2p(comm->nranks);
  int unreachable = -1;
  std::string why;
  RouteNeed mine = planRoutes(comm, &p2p, &unreachable, &why);
  std::vector<int> needs(comm->nranks);
  needs[comm->rank] = mine;
  LLCHECK(comm->bootstrap->allGather(needs.data(), sizeof(int)));
  if (mine == kUnreachable) {
    const llPeerInfo& peer = comm->peers[unreachable];
    LL_WARN("rank %d cannot reach rank %d (pid %d, GPU %s) with the allowed transports 0x%x "
            "(p2p needs the same host and peer access; ibgda is not allowed)",
            comm->rank, unreachable, peer.pid, peer.busId, comm->config.transports);
    return llInvalidUsage;
  }
  if (mine == kIbgdaUnusable) {
    LL_WARN("rank %d needs ibgda but cannot use it: %s", comm->rank, why.c_str());
    return llSystemError;
  }
  bool anyIbgda = false;
  for (int r = 0; r < comm->nranks; r++) {
    LL_REQUIRE(needs[r] == kP2pOnly || needs[r] == kNeedsIbgda, needs[r] == kUnreachable ? llInvalidUsage : llSystemError,
               "rank %d cannot reach every rank with the allowed transports (see its log)", r);
    anyIbgda |= needs[r] == kNeedsIbgda;
  }
  if (anyIbgda) {
#ifdef LLEP_HAVE_IBGDA
    LLCHECK(llIbgdaTransportConnect(comm, &comm->ibgda));
#endif
  }
  for (int r = 0; r < comm->nranks; r++) {
    if (p2p[r]) {
      LLCHECK(llP2pConnect(comm, comm->peers[r], &comm->routes[r]));
    } else {
#ifdef LLEP_HAVE_IBGDA
      llIbgdaTransportRoute(comm->ibgda, comm->peers[r], &comm->routes[r]);
#endif
    }
  }
  CUDACHECK(cudaMalloc((void**)&comm->devRoutes, comm->nranks * sizeof(llRoute)));
  CUDACHECK(cudaMemcpy(comm->devRoutes, comm->routes.data(), comm->nranks * sizeof(llRoute),
                       cudaMemcpyHostToDevice));
  return llSuccess;
}

llResult_t setup(llComm* comm) {
  CUDACHECK(cudaGetDevice(&comm->cudaDev));
  CUDACHECK(cudaMalloc((void**)&comm->buffer, comm->config.bufferBytes));
  CUDACHECK(cudaMemset(comm->buffer, 0, comm->config.bufferBytes));
  CUDACHECK(cudaHostAlloc((void**)&comm->asyncError, sizeof(llAsyncError), cudaHostAllocMapped));
  llClearAsyncError(comm);

  llPeerInfo self{};
  self.magic = kPeerInfoMagic;
  self.rank = comm->rank;
  self.nranks = comm->nranks;
  self.machineHash = machineHash();
  self.hostHash = hostHash(comm->rank, self.machineHash);
  self.pid = getpid();
  self.cudaDev = comm->cudaDev;
  CUDACHECK(cudaDeviceGetPCIBusId(self.busId, sizeof(self.busId), comm->cudaDev));
  self.config = comm->config;
  LLCHECK(llP2pExport(comm, &self));

  comm->peers.assign(comm->nranks, llPeerInfo{});
  comm->peers[comm->rank] = self;
  LLCHECK(comm->bootstrap->allGather(comm->peers.data(), sizeof(llPeerInfo)));
  LLCHECK(checkAgreement(comm));
  LLCHECK(connectPeers(comm));
  LLCHECK(llCallsSetup(comm));
  CUDACHECK(cudaDeviceSynchronize());
  // No rank may use a route before its owner has mapped and zeroed everything.
  LLCHECK(comm->bootstrap->barrier());
  LL_INFO(LL_INIT, "rank %d/%d on GPU %s: buffer %p (%zu bytes), ready", comm->rank, comm->nranks, self.busId,
          (void*)comm->buffer, comm->config.bufferBytes);
  return llSuccess;
}

}  // namespace

void llClearAsyncError(llComm* comm) {
  comm->asyncError->peer = -1;
  comm->asyncError->syndrome = 0;
  comm->asyncError->wqeCounter = 0;
  comm->asyncError->code = llSuccess;
  comm->asyncErrorDescribed = false;
}

void llDescribeAsyncError(llComm* comm) {
  if (comm->asyncErrorDescribed) return;
  comm->asyncErrorDescribed = true;
  volatile llAsyncError& e = *comm->asyncError;
  if (e.code == llRemoteError && e.peer >= 0) {
#ifdef LLEP_HAVE_IBGDA
    const char* name = llIbgdaTransportSyndromeName(e.syndrome);
#else
    const char* name = "error CQE";
#endif
    LL_WARN("rank %d: ibgda WQE %u to rank %d failed: %s (syndrome 0x%x)", comm->rank, e.wqeCounter, e.peer, name,
            e.syndrome);
    return;
  }
  LL_WARN("rank %d: a kernel reported %s", comm->rank, llGetErrorString((llResult_t)e.code));
}

llResult_t llCommSetup(llBootstrap* bootstrap, const llCommConfig& config, llComm** out) {
  std::unique_ptr<llBootstrap> owned(bootstrap);
  llComm* comm = new llComm();
  comm->rank = bootstrap->rank;
  comm->nranks = bootstrap->nranks;
  comm->config = config;
  comm->bootstrap = owned.release();
  llResult_t res = setup(comm);
  if (res != llSuccess) {
    llCommTeardown(comm, /*barrier=*/false);
    return res;
  }
  *out = comm;
  return llSuccess;
}

llResult_t llCommTeardown(llComm* comm, bool barrier) {
  llResult_t res = llSuccess, r;
  int prevDev = -1;
  if (cudaGetDevice(&prevDev) != cudaSuccess) (void)cudaGetLastError();
  if (comm->cudaDev >= 0 && comm->cudaDev != prevDev && cudaSetDevice(comm->cudaDev) != cudaSuccess)
    (void)cudaGetLastError();
  // Two barriers: nobody unmaps a peer while it may still be writing, and nobody frees its buffer
  // while a peer still maps it.
  if (barrier && (r = comm->bootstrap->barrier()) != llSuccess) res = r;
  for (llRoute& route : comm->routes)
    if ((r = llP2pDisconnect(comm, &route)) != llSuccess) res = r;
#ifdef LLEP_HAVE_IBGDA
  // Every rank's kernels are done and quiet: no QP has work left, so the QPs can go.
  if ((r = llIbgdaTransportClose(comm->ibgda)) != llSuccess) res = r;
  comm->ibgda = nullptr;
#endif
  if (barrier && (r = comm->bootstrap->barrier()) != llSuccess) res = r;
  llCallsTeardown(comm);
  if (comm->devRoutes && cudaFree(comm->devRoutes) != cudaSuccess) res = llCudaError;
  if (comm->buffer && cudaFree(comm->buffer) != cudaSuccess) res = llCudaError;
  if (comm->asyncError && cudaFreeHost((void*)comm->asyncError) != cudaSuccess) res = llCudaError;
  (void)cudaGetLastError();
  delete comm->bootstrap;
  delete comm;
  if (prevDev >= 0 && cudaSetDevice(prevDev) != cudaSuccess) (void)cudaGetLastError();
  return res;
}
