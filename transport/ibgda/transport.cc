#include "transport/ibgda/transport.h"

#include "checks.h"
#include "transport/ibgda/device_qps.h"
#include "transport/ibgda/setup.h"
#include "transport/ibgda/verbs.h"

namespace {

// A dispatch posts one WQE per message; a ring of 1024 WQEBBs per peer keeps the NIC busy while the kernel
// reclaims slots from the CQ (ibgda_qp.h never overruns it, whatever the message count).
constexpr uint32_t kLogSqBbs = 10;

}  // namespace

struct llIbgdaTransport {
  llIbgdaEndpoints ep;
  llIbgdaDeviceQps dev;
};

bool llIbgdaTransportUsable(std::string* why) {
  const llVerbs* v = nullptr;
  if (llVerbsLoad(&v) != llSuccess) {
    *why = llGetLastError(nullptr);
    return false;
  }
  int n = 0;
  ibv_device** list = v->getDeviceList(&n);
  if (list) v->freeDeviceList(list);
  if (!list || n == 0) {
    *why = std::string("no RDMA device found by ") + v->provider +
           " (ibgda needs a ConnectX NIC, or LLEP_IB_DEVICE=model for the software device)";
    return false;
  }
  return true;
}

llResult_t llIbgdaTransportConnect(llComm* comm, llIbgdaTransport** out) {
  const llVerbs* v = nullptr;
  LLCHECK(llVerbsLoad(&v));
  auto* t = new llIbgdaTransport();
  llIbgdaSetupOptions o;
  o.logSqBbs = kLogSqBbs;
  o.logCqSize = kLogSqBbs;
  o.rings = llIbgdaGpuRings();
  o.spinTimeoutNs = (uint64_t)comm->config.timeoutMs * 1000000ull;  // a stalled NIC ends a kernel like a lost peer
  llResult_t res = llIbgdaConnect(v, comm->bootstrap, comm->buffer, comm->config.bufferBytes, &o, &t->ep);
  if (res == llSuccess) res = llIbgdaUploadQps(t->ep, &t->dev);
  if (res != llSuccess) {
    llIbgdaTransportClose(t);
    return res;
  }
  if (t->ep.roce)
    LL_INFO(LL_INIT, "rank %d: ibgda connected to %d ranks through %s (RoCE, GID index %d)", comm->rank,
            comm->nranks, v->provider, t->ep.gidIndex);
  else
    LL_INFO(LL_INIT, "rank %d: ibgda connected to %d ranks through %s (lid %u)", comm->rank, comm->nranks,
            v->provider, t->ep.lid);
  *out = t;
  return llSuccess;
}

void llIbgdaTransportRoute(const llIbgdaTransport* t, const llPeerInfo& peer, llRoute* route) {
  *route = llRoute{};
  route->type = LL_ROUTE_IBGDA;
  route->peer = (uint32_t)peer.rank;
  route->bytes = peer.config.bufferBytes;
  route->qp = t->dev.qps + peer.rank;
  route->remoteBase = t->ep.peers[peer.rank].base;
  route->rkey = t->ep.peers[peer.rank].rkey;
  route->lkey = t->ep.mr->lkey;
}

llResult_t llIbgdaTransportClose(llIbgdaTransport* t) {
  if (t == nullptr) return llSuccess;
  llResult_t res = llIbgdaFreeQps(&t->dev);
  llResult_t r = llIbgdaDisconnect(&t->ep);
  if (res == llSuccess) res = r;
  delete t;
  return res;
}

const char* llIbgdaTransportSyndromeName(uint32_t syndrome) { return llIbgdaSyndromeName(syndrome); }
