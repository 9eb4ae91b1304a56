#include "transport/ibgda/setup.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "checks.h"
#include "param.h"
#include "transport/ibgda/model/cuda_memory.h"
#include "transport/ibgda/prm_cmd.h"
#include "transport/ibgda/roce.h"

namespace {

constexpr size_t kRingAlign = 4096;
constexpr size_t kRecordBytes = 64;  // each doorbell record gets its own 64 bytes
constexpr int kAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;

size_t roundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

void* hostAlloc(size_t bytes, size_t align, void*) { return std::aligned_alloc(align, roundUp(bytes, align)); }
void hostFree(void* p, void*) { std::free(p); }
llResult_t hostUpload(void* dst, const void* src, size_t bytes, void*) {
  std::memcpy(dst, src, bytes);
  return llSuccess;
}

// Where peer p's pieces sit inside the ring memory.
struct Layout {
  size_t sqBytes, cqBytes, perPeer, records, total;
  size_t sq(int p) const { return (size_t)p * perPeer; }
  size_t cq(int p) const { return (size_t)p * perPeer + sqBytes; }
  size_t qpDbrec(int p) const { return records + (size_t)p * 2 * kRecordBytes; }
  size_t cqDbrec(int p) const { return qpDbrec(p) + kRecordBytes; }
};

Layout layoutFor(int nranks, uint32_t logSq, uint32_t logCq) {
  Layout l;
  l.sqBytes = roundUp((size_t)kLlMlx5WqeBbBytes << logSq, kRingAlign);
  l.cqBytes = roundUp((size_t)64 << logCq, kRingAlign);
  l.perPeer = l.sqBytes + l.cqBytes;
  l.records = l.perPeer * nranks;
  l.total = roundUp(l.records + (size_t)nranks * 2 * kRecordBytes, kRingAlign);
  return l;
}

// A dma-buf file descriptor for GPU memory [buffer, buffer + bytes), or -1 when CUDA cannot give one (not
// GPU memory, a driver without cuMemGetHandleForAddressRange, or no dma-buf support on this system).
int gpuDmabufFd(void* buffer, size_t bytes) {
  int device = -1;
  if (!llnic::cudaDeviceOf((uint64_t)(uintptr_t)buffer, &device)) return -1;
  using GetHandle = CUresult (*)(void*, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion("cuMemGetHandleForAddressRange", &fn, 12000, cudaEnableDefault, &found) !=
          cudaSuccess ||
      found != cudaDriverEntryPointSuccess || fn == nullptr) {
    (void)cudaGetLastError();
    return -1;
  }
  int fd = -1;
  long page = sysconf(_SC_PAGESIZE);
  size_t length = roundUp(bytes, page > 0 ? (size_t)page : 4096);  // the range must be whole host pages
  if (reinterpret_cast<GetHandle>(fn)(&fd, (CUdeviceptr)(uintptr_t)buffer, length,
                                      CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) != CUDA_SUCCESS)
    return -1;
  return fd;
}

// GPU memory is registered through a dma-buf where CUDA, rdma-core (ibv_reg_dmabuf_mr) and the kernel all
// allow it; otherwise, and for host memory, with ibv_reg_mr, which for GPU memory needs the nvidia-peermem
// module.
llResult_t registerBuffer(const llVerbs* v, ibv_pd* pd, void* buffer, size_t bytes, ibv_mr** mr) {
  int fd = v->regDmabufMr ? gpuDmabufFd(buffer, bytes) : -1;
  if (fd >= 0) {
    *mr = v->regDmabufMr(pd, 0, bytes, (uint64_t)(uintptr_t)buffer, fd, kAccess);
    int err = errno;
    close(fd);  // the registration holds its own reference to the dma-buf
    if (*mr) {
      LL_INFO(LL_INIT, "ibgda: %zu bytes at %p registered through a dma-buf", bytes, buffer);
      return llSuccess;
    }
    LL_INFO(LL_INIT, "ibgda: ibv_reg_dmabuf_mr failed (%s); trying ibv_reg_mr (nvidia-peermem)", strerror(err));
  }
  *mr = v->regMr(pd, buffer, bytes, kAccess);
  if (!*mr) {
    LL_WARN("ibgda: ibv_reg_mr of %zu bytes at %p failed: %s%s", bytes, buffer, strerror(errno),
            fd >= 0 ? "" : " (for GPU memory: dma-buf support or the nvidia-peermem module)");
    return llSystemError;
  }
  return llSuccess;
}

// One rank's part of the exchange; followed by nranks QPNs (its QP towards each rank).
struct Card {
  uint8_t gid[16];
  uint64_t base;
  uint32_t rkey;
  uint16_t lid;
  uint16_t pad;
};
static_assert(sizeof(Card) == 32, "Card travels as raw bytes");

// A DevX command that failed: its status and syndrome (when the output holds one) and errno.
llResult_t commandFailed(const char* command, int peer, const std::vector<uint8_t>& out, int err) {
  LlPrmCmdStatus st = out.size() >= 16 ? llPrmDecodeStatus(out.data()) : LlPrmCmdStatus{0, 0};
  LL_WARN("ibgda: %s for peer %d failed: status 0x%x (%s), syndrome 0x%x, errno %d (%s)", command, peer,
          st.status, st.status ? llPrmStatusName(st.status) : "none", st.syndrome, err, strerror(err));
  return llSystemError;
}

llResult_t encodeFailed(const char* command, int peer, const char* field) {
  LL_WARN("ibgda: %s for peer %d: parameter %s does not fit its field", command, peer, field);
  return llInternalError;
}

// Sends one modify command (a QP transition) and checks its status.
llResult_t modify(const llVerbs* v, mlx5dv_devx_obj* qp, const char* command, int peer,
                  const std::vector<uint8_t>& in, size_t outSize) {
  std::vector<uint8_t> out(outSize, 0);
  errno = 0;
  int rc = v->devxObjModify(qp, in.data(), in.size(), out.data(), out.size());
  if (rc != 0 || llPrmDecodeStatus(out.data()).status != kLlPrmStatusOk)
    return commandFailed(command, peer, out, rc > 0 ? rc : errno);
  return llSuccess;
}

llResult_t createCqQp(llIbgdaEndpoints* ep, const Layout& l, int p, uint32_t eqn, const llIbgdaSetupOptions& o) {
  const llVerbs* v = ep->v;
  std::vector<uint8_t> in, out;
  size_t outSize = 0;
  LlPrmCreateCqParams cq{};
  cq.logCqSize = o.logCqSize;
  cq.uarPage = ep->uar->page_id;
  cq.eqn = eqn;
  cq.cqUmemId = ep->umem->umem_id;
  cq.cqUmemOffset = l.cq(p);
  cq.dbrUmemId = ep->umem->umem_id;
  cq.dbrUmemOffset = l.cqDbrec(p);
  cq.overrunIgnore = false;
  if (const char* f = llPrmBuildCreateCq(cq, &in, &outSize)) return encodeFailed("CREATE_CQ", p, f);
  out.assign(outSize, 0);
  errno = 0;
  ep->cqObjs[p] = v->devxObjCreate(ep->context, in.data(), in.size(), out.data(), out.size());
  if (!ep->cqObjs[p]) return commandFailed("CREATE_CQ", p, out, errno);
  ep->cqn[p] = llPrmDecodeCqn(out.data());

  LlPrmCreateQpParams qp{};
  qp.pd = ep->pdn;
  qp.uarPage = ep->uar->page_id;
  qp.logSqSize = o.logSqBbs;
  qp.cqnSnd = ep->cqn[p];
  qp.cqnRcv = ep->cqn[p];
  qp.wqUmemId = ep->umem->umem_id;
  qp.wqUmemOffset = l.sq(p);
  qp.dbrUmemId = ep->umem->umem_id;
  qp.dbrUmemOffset = l.qpDbrec(p);
  if (const char* f = llPrmBuildCreateQp(qp, &in, &outSize)) return encodeFailed("CREATE_QP", p, f);
  out.assign(outSize, 0);
  errno = 0;
  ep->qpObjs[p] = v->devxObjCreate(ep->context, in.data(), in.size(), out.data(), out.size());
  if (!ep->qpObjs[p]) return commandFailed("CREATE_QP", p, out, errno);

  LlIbgdaQp& q = ep->qp[p];
  q = LlIbgdaQp{};
  q.sq = ep->ringMem + l.sq(p);
  q.logSqBbs = o.logSqBbs;
  q.spinTimeoutNs = o.spinTimeoutNs;
  q.qpn = llPrmDecodeQpn(out.data());
  q.sqDbrec = reinterpret_cast<uint32_t*>(ep->ringMem + l.qpDbrec(p));
  q.bf = reinterpret_cast<uint64_t*>(ep->uar->reg_addr);
  q.cq = ep->ringMem + l.cq(p);
  q.logCqSize = o.logCqSize;
  q.cqDbrec = reinterpret_cast<uint32_t*>(ep->ringMem + l.cqDbrec(p));
  return llSuccess;
}

llResult_t bringUp(llIbgdaEndpoints* ep, int p, const ibv_port_attr& port, const llIbgdaAddressing& addr,
                   uint8_t portNum) {
  const llVerbs* v = ep->v;
  const llIbgdaPeer& peer = ep->peers[p];
  const uint32_t qpn = ep->qp[p].qpn;
  std::vector<uint8_t> in;
  size_t outSize = 0;

  LlPrmRst2initParams a{};
  a.qpn = qpn;
  a.pd = ep->pdn;
  a.vhcaPortNum = portNum;
  a.remoteRead = a.remoteWrite = a.remoteAtomic = true;
  a.atomicMode = kLlPrmQpcAtomicModeUpTo8B;  // masked fetch-add on 4- and 8-byte operands
  if (const char* f = llPrmBuildRst2init(a, &in, &outSize)) return encodeFailed("RST2INIT_QP", p, f);
  LLCHECK(modify(v, ep->qpObjs[p], "RST2INIT_QP", p, in, outSize));

  LlPrmInit2rtrParams b{};
  b.qpn = qpn;
  b.mtu = port.active_mtu;
  b.logMsgMax = 30;
  b.remoteQpn = peer.qpn;
  b.nextRcvPsn = 0;
  b.logRraMax = 4;
  b.minRnrNak = 12;
  b.path.vhcaPortNum = portNum;
  if (addr.roce)
    LLCHECK(llIbgdaRocePath(ep->v, ep->pd, p, ep->peers[p].gid, addr, portNum, &b));
  else
    b.path.rlid = peer.lid;
  if (const char* f = llPrmBuildInit2rtr(b, &in, &outSize)) return encodeFailed("INIT2RTR_QP", p, f);
  LLCHECK(modify(v, ep->qpObjs[p], "INIT2RTR_QP", p, in, outSize));

  LlPrmRtr2rtsParams c{};
  c.qpn = qpn;
  c.nextSendPsn = 0;
  c.logSraMax = 4;
  c.retryCount = 7;
  c.rnrRetry = 7;
  c.ackTimeout = 14;
  if (const char* f = llPrmBuildRtr2rts(c, &in, &outSize)) return encodeFailed("RTR2RTS_QP", p, f);
  return modify(v, ep->qpObjs[p], "RTR2RTS_QP", p, in, outSize);
}

llResult_t connect(const llVerbs* v, llBootstrap* bs, void* buffer, size_t bytes, const llIbgdaSetupOptions& o,
                   llIbgdaEndpoints* ep) {
  const int R = bs->nranks;
  ep->v = v;
  ep->rank = bs->rank;
  ep->nranks = R;
  ep->rings = o.rings ? *o.rings : *llIbgdaHostRings();
  LL_REQUIRE(o.logSqBbs >= 2 && o.logSqBbs <= 15 && o.logCqSize >= o.logSqBbs && o.logCqSize <= 22,
             llInvalidArgument, "ibgda: ring sizes logSqBbs %u, logCqSize %u out of range", o.logSqBbs,
             o.logCqSize);
  LL_REQUIRE(buffer && bytes, llInvalidArgument, "ibgda: no buffer to register");

  const char* hca = o.hca ? o.hca : (*llParamIbHca() ? llParamIbHca() : nullptr);
  LLCHECK(llVerbsOpenDevx(v, hca, &ep->context));
  ibv_port_attr port{};
  if (v->queryPort(ep->context, o.port, &port) != 0) {
    LL_WARN("ibgda: query of port %u failed: %s", o.port, strerror(errno));
    return llSystemError;
  }
  ep->lid = port.lid;
  llIbgdaAddressing addr;
  LLCHECK(llIbgdaLocalAddress(v, ep->context, o.port, port, &addr));
  ep->roce = addr.roce;
  ep->gidIndex = addr.gidIndex;
  Card mine{};
  std::memcpy(mine.gid, addr.gid.raw, 16);

  ep->pd = v->allocPd(ep->context);
  if (!ep->pd) {
    LL_WARN("ibgda: ibv_alloc_pd failed: %s", strerror(errno));
    return llSystemError;
  }
  mlx5dv_pd dvPd{};
  mlx5dv_obj obj{};
  obj.pd.in = ep->pd;
  obj.pd.out = &dvPd;
  if (v->mlx5dvInitObj(&obj, MLX5DV_OBJ_PD) != 0) {
    LL_WARN("ibgda: mlx5dv_init_obj(PD) failed: %s", strerror(errno));
    return llSystemError;
  }
  ep->pdn = dvPd.pdn;
  LLCHECK(registerBuffer(v, ep->pd, buffer, bytes, &ep->mr));

  const Layout l = layoutFor(R, o.logSqBbs, o.logCqSize);
  ep->ringMem = static_cast<uint8_t*>(ep->rings.alloc(l.total, kRingAlign, ep->rings.user));
  if (!ep->ringMem) {
    LL_WARN("ibgda: cannot allocate %zu bytes of ring memory", l.total);
    return llSystemError;
  }
  ep->ringBytes = l.total;
  {
    // First image: zero everywhere (records, SQs), every CQE invalid and hardware-owned.
    std::vector<uint8_t> image(l.total, 0);
    for (int p = 0; p < R; p++)
      for (size_t i = 0; i < ((size_t)1 << o.logCqSize); i++)
        image[l.cq(p) + i * 64 + kLlMlx5CqeOpOwnOffset] = kLlMlx5CqeInvalid << 4;
    LLCHECK(ep->rings.upload(ep->ringMem, image.data(), l.total, ep->rings.user));
  }
  ep->umem = v->devxUmemReg(ep->context, ep->ringMem, l.total, IBV_ACCESS_LOCAL_WRITE);
  if (!ep->umem) {
    LL_WARN("ibgda: mlx5dv_devx_umem_reg of %zu bytes failed: %s", l.total, strerror(errno));
    return llSystemError;
  }
  ep->uar = v->devxAllocUar(ep->context, MLX5DV_UAR_ALLOC_TYPE_BF);
  if (!ep->uar) {
    LL_WARN("ibgda: mlx5dv_devx_alloc_uar failed: %s", strerror(errno));
    return llSystemError;
  }
  uint32_t eqn = 0;
  if (v->devxQueryEqn(ep->context, 0, &eqn) != 0) {
    LL_WARN("ibgda: mlx5dv_devx_query_eqn failed: %s", strerror(errno));
    return llSystemError;
  }

  ep->cqObjs.assign(R, nullptr);
  ep->qpObjs.assign(R, nullptr);
  ep->cqn.assign(R, 0);
  ep->qp.assign(R, LlIbgdaQp{});
  ep->peers.assign(R, llIbgdaPeer{});
  for (int p = 0; p < R; p++) LLCHECK(createCqQp(ep, l, p, eqn, o));

  // Exchange: every rank's card and its QPN towards every rank.
  mine.base = (uint64_t)(uintptr_t)buffer;
  mine.rkey = ep->mr->rkey;
  mine.lid = port.lid;
  const size_t slot = roundUp(sizeof(Card) + 4 * (size_t)R, 8);
  std::vector<uint8_t> all(slot * R, 0);
  uint8_t* own = all.data() + slot * bs->rank;
  std::memcpy(own, &mine, sizeof(Card));
  for (int p = 0; p < R; p++) std::memcpy(own + sizeof(Card) + 4 * p, &ep->qp[p].qpn, 4);
  LLCHECK(bs->allGather(all.data(), slot));
  for (int p = 0; p < R; p++) {
    Card c;
    std::memcpy(&c, all.data() + slot * p, sizeof(Card));
    llIbgdaPeer& peer = ep->peers[p];
    peer.lid = c.lid;
    std::memcpy(peer.gid, c.gid, 16);
    peer.rkey = c.rkey;
    peer.base = c.base;
    std::memcpy(&peer.qpn, all.data() + slot * p + sizeof(Card) + 4 * bs->rank, 4);
  }
  for (int p = 0; p < R; p++) LLCHECK(bringUp(ep, p, port, addr, o.port));
  // Every rank's QPs accept before anyone posts: a write to a QP still in RST or INIT would find no
  // responder (on hardware, retries that may run out).
  return bs->barrier();
}

}  // namespace

const llIbgdaRingAllocator* llIbgdaHostRings() {
  static const llIbgdaRingAllocator host{hostAlloc, hostFree, hostUpload, nullptr};
  return &host;
}

llResult_t llIbgdaConnect(const llVerbs* v, llBootstrap* bs, void* buffer, size_t bytes,
                          const llIbgdaSetupOptions* options, llIbgdaEndpoints* out) {
  LL_REQUIRE(v && bs && out, llInvalidArgument, "ibgda: llIbgdaConnect needs a verbs table, bootstrap and output");
  *out = llIbgdaEndpoints{};
  const llIbgdaSetupOptions o = options ? *options : llIbgdaSetupOptions{};
  llResult_t res = connect(v, bs, buffer, bytes, o, out);
  if (res != llSuccess) {
    // Keep the first failure's message: teardown failures only log.
    llIbgdaDisconnect(out);
    *out = llIbgdaEndpoints{};
  }
  return res;
}

llResult_t llIbgdaDisconnect(llIbgdaEndpoints* ep) {
  if (!ep || !ep->v) return llSuccess;
  const llVerbs* v = ep->v;
  llResult_t res = llSuccess;
  auto fail = [&](const char* what, int peer) {
    if (res == llSuccess) {
      if (peer >= 0) LL_WARN("ibgda: %s for peer %d failed: %s", what, peer, strerror(errno));
      else LL_WARN("ibgda: %s failed: %s", what, strerror(errno));
    }
    res = llSystemError;
  };
  for (size_t p = ep->qpObjs.size(); p-- > 0;)
    if (ep->qpObjs[p] && v->devxObjDestroy(ep->qpObjs[p]) != 0) fail("destroying QP", (int)p);
  for (size_t p = ep->cqObjs.size(); p-- > 0;)
    if (ep->cqObjs[p] && v->devxObjDestroy(ep->cqObjs[p]) != 0) fail("destroying CQ", (int)p);
  ep->qpObjs.clear();
  ep->cqObjs.clear();
  if (ep->uar) v->devxFreeUar(ep->uar);
  ep->uar = nullptr;
  if (ep->umem && v->devxUmemDereg(ep->umem) != 0) fail("mlx5dv_devx_umem_dereg", -1);
  ep->umem = nullptr;
  if (ep->ringMem) ep->rings.free(ep->ringMem, ep->rings.user);
  ep->ringMem = nullptr;
  if (ep->mr && v->deregMr(ep->mr) != 0) fail("ibv_dereg_mr", -1);
  ep->mr = nullptr;
  if (ep->pd && v->deallocPd(ep->pd) != 0) fail("ibv_dealloc_pd", -1);
  ep->pd = nullptr;
  if (ep->context && v->closeDevice(ep->context) != 0) fail("ibv_close_device", -1);
  ep->context = nullptr;
  ep->qp.clear();
  ep->peers.clear();
  ep->cqn.clear();
  ep->v = nullptr;
  return res;
}

const char* llIbgdaSyndromeName(uint32_t s) {
  switch (s) {
    case kLlIbgdaSyndStalled: return "no completion within the timeout (NIC stalled)";
    case kLlMlx5SyndLocalLengthErr: return "local length error";
    case kLlMlx5SyndLocalQpOpErr: return "local QP operation error";
    case kLlMlx5SyndLocalProtErr: return "local protection error";
    case kLlMlx5SyndWrFlushErr: return "work request flushed";
    case kLlMlx5SyndMwBindErr: return "memory window bind error";
    case kLlMlx5SyndBadRespErr: return "bad response";
    case kLlMlx5SyndLocalAccessErr: return "local access error";
    case kLlMlx5SyndRemoteInvalReqErr: return "remote invalid request";
    case kLlMlx5SyndRemoteAccessErr: return "remote access error";
    case kLlMlx5SyndRemoteOpErr: return "remote operation error";
    case kLlMlx5SyndTransportRetryExcErr: return "transport retries exceeded";
    case kLlMlx5SyndRnrRetryExcErr: return "RNR retries exceeded";
    case kLlMlx5SyndRemoteAbortedErr: return "remote aborted";
    default: return "unknown syndrome";
  }
}

llResult_t llIbgdaQuietPeer(llIbgdaEndpoints* ep, int peer) {
  LL_REQUIRE(ep && peer >= 0 && peer < (int)ep->qp.size(), llInvalidArgument, "ibgda: no QP to peer %d", peer);
  LlIbgdaQp* qp = &ep->qp[peer];
  const uint32_t synd = llIbgdaQuiet(qp);
  if (synd == 0) return llSuccess;
  // On RoCE, retries that run out most often mean packets that go nowhere: a wrong GID or MAC, or no route.
  const std::string hint = ep->roce && synd == kLlMlx5SyndTransportRetryExcErr
                               ? "; RoCE: no answer from GID " + llIbgdaGidText(ep->peers[peer].gid) +
                                     " to our GID index " + std::to_string(ep->gidIndex)
                               : "";
  LL_WARN("ibgda: rank %d -> peer %d (qpn 0x%x -> 0x%x): work request %u failed: syndrome 0x%x (%s)%s", ep->rank,
          peer, qp->qpn, ep->peers[peer].qpn, qp->errWqeCounter, synd, llIbgdaSyndromeName(synd), hint.c_str());
  return llRemoteError;
}
