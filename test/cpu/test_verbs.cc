// The verbs table (transport/ibgda/verbs.h) and the software device behind it: the host sequence a real ibgda
// setup performs, from the device list to a QP in RTS, with DevX commands built by llep's own PRM encoders
// (prm_cmd.h) and decoded by the model's independent reader; then a WQE written by hand into the send ring is
// executed after a doorbell. The rdma-core path runs in a fresh child process, so the once-per-process load
// of the model table in this one cannot leak into it; so do the cases of the model's Ethernet (RoCE) port,
// whose link layer LLEP_MODEL_LINK sets once per process.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "debug.h"
#include "harness.h"
#include "param.h"
#include "transport/ibgda/model/provider.h"
#include "transport/ibgda/prm_cmd.h"
#include "transport/ibgda/verbs.h"

namespace {

constexpr const char* kChildEnv = "LLTEST_VERBS_RDMA_CORE_CHILD";
constexpr const char* kLinkChildEnv = "LLTEST_VERBS_LINK_CHILD";

#define EXPECT_LL_OK(call) EXPECT_MSG((call) == llSuccess, "%s", llLastError())

const llVerbs* modelVerbs() {
  setenv("LLEP_IB_DEVICE", "model", 1);
  const llVerbs* v = nullptr;
  EXPECT_LL_OK(llVerbsLoad(&v));
  EXPECT(std::strcmp(v->provider, "model") == 0);
  return v;
}

// Zeroed, page-aligned host memory.
struct Block {
  explicit Block(size_t bytes)
      : size(bytes), p(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)), &std::free) {
    std::memset(p.get(), 0, bytes);
  }
  uint64_t addr(size_t offset = 0) const { return (uint64_t)(uintptr_t)(p.get() + offset); }
  size_t size;
  std::unique_ptr<uint8_t, decltype(&std::free)> p;
};

void putBe16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
void putBe32(uint8_t* p, uint32_t v) {
  putBe16(p, (uint16_t)(v >> 16));
  putBe16(p + 2, (uint16_t)v);
}
void putBe64(uint8_t* p, uint64_t v) {
  putBe32(p, (uint32_t)(v >> 32));
  putBe32(p + 4, (uint32_t)v);
}
uint32_t getBe32(const uint8_t* p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

// One context with everything a QP needs, laid out in one UMEM: CQ ring, send ring, doorbell records.
constexpr uint32_t kLogCq = 4, kLogSq = 4;
constexpr size_t kCqOffset = 0, kSqOffset = 4096, kCqDbrOffset = 8192, kQpDbrOffset = 8192 + 64;
constexpr uint8_t kCqeOpOwn = 63;

struct Device {
  explicit Device(const llVerbs* verbs) : v(verbs), mem(3 * 4096) {
    EXPECT_LL_OK(llVerbsOpenDevx(v, "llep_model0", &ctx));
    pd = v->allocPd(ctx);
    EXPECT(pd != nullptr);
    mlx5dv_pd dvPd{};
    mlx5dv_obj obj{};
    obj.pd.in = pd;
    obj.pd.out = &dvPd;
    EXPECT_EQ(v->mlx5dvInitObj(&obj, MLX5DV_OBJ_PD), 0);
    pdn = dvPd.pdn;
    // Software marks every CQE invalid (opcode 0xf) before the device owns the ring.
    for (uint32_t i = 0; i < (1u << kLogCq); i++) mem.p.get()[kCqOffset + i * 64 + kCqeOpOwn] = 0xf0;
    umem = v->devxUmemReg(ctx, mem.p.get(), mem.size, IBV_ACCESS_LOCAL_WRITE);
    EXPECT(umem != nullptr);
    uar = v->devxAllocUar(ctx, MLX5DV_UAR_ALLOC_TYPE_NC);
    EXPECT(uar != nullptr);
    EXPECT_EQ(v->devxQueryEqn(ctx, 0, &eqn), 0);
  }
  ~Device() { v->closeDevice(ctx); }

  LlPrmCreateCqParams cqParams() const {
    return {kLogCq, uar->page_id, eqn, umem->umem_id, kCqOffset, umem->umem_id, kCqDbrOffset, false};
  }
  LlPrmCreateQpParams qpParams() const {
    return {pdn, uar->page_id, kLogSq, cqn, cqn, umem->umem_id, kSqOffset, umem->umem_id, kQpDbrOffset};
  }

  // Runs a command that is expected to succeed; returns its output.
  std::vector<uint8_t> create(const std::vector<uint8_t>& in, size_t outSize, mlx5dv_devx_obj** obj) {
    std::vector<uint8_t> out(outSize, 0xee);
    *obj = v->devxObjCreate(ctx, in.data(), in.size(), out.data(), out.size());
    LlPrmCmdStatus s = llPrmDecodeStatus(out.data());
    EXPECT_MSG(*obj != nullptr, "status 0x%x (%s) syndrome 0x%x", s.status, llPrmStatusName(s.status),
               s.syndrome);
    EXPECT_EQ((int)s.status, 0);
    return out;
  }

  void createCqQp() {
    std::vector<uint8_t> in;
    size_t outSize = 0;
    EXPECT(llPrmBuildCreateCq(cqParams(), &in, &outSize) == nullptr);
    cqn = llPrmDecodeCqn(create(in, outSize, &cqObj).data());
    EXPECT(llPrmBuildCreateQp(qpParams(), &in, &outSize) == nullptr);
    qpn = llPrmDecodeQpn(create(in, outSize, &qpObj).data());
  }

  // Sends one transition through devx_obj_modify; returns the command status.
  uint8_t modify(const std::vector<uint8_t>& in, size_t outSize, int* rc = nullptr) {
    std::vector<uint8_t> out(outSize);
    int r = v->devxObjModify(qpObj, in.data(), in.size(), out.data(), out.size());
    if (rc) *rc = r;
    return llPrmDecodeStatus(out.data()).status;
  }

  // RST -> INIT -> RTR -> RTS towards (rlid, remoteQpn).
  void connect(uint32_t rlid, uint32_t remoteQpn) {
    toInit();
    LlPrmAddressPath path{};
    path.rlid = rlid;
    path.vhcaPortNum = 1;
    EXPECT_EQ((int)toRtr(path, remoteQpn), 0);
    toRts();
  }

  void toInit() {
    std::vector<uint8_t> in;
    size_t outSize = 0;
    EXPECT(llPrmBuildRst2init({qpn, pdn, 1, true, true, true, kLlPrmQpcAtomicModeUpTo8B}, &in, &outSize) ==
           nullptr);
    EXPECT_EQ((int)modify(in, outSize), 0);
  }

  // INIT -> RTR along `path`; returns the command status.
  uint8_t toRtr(const LlPrmAddressPath& path, uint32_t remoteQpn) {
    std::vector<uint8_t> in;
    size_t outSize = 0;
    LlPrmInit2rtrParams rtr{};
    rtr.qpn = qpn;
    rtr.mtu = IBV_MTU_4096;
    rtr.logMsgMax = 30;
    rtr.remoteQpn = remoteQpn;
    rtr.logRraMax = 4;
    rtr.minRnrNak = 12;
    rtr.path = path;
    EXPECT(llPrmBuildInit2rtr(rtr, &in, &outSize) == nullptr);
    return modify(in, outSize);
  }

  void toRts() {
    std::vector<uint8_t> in;
    size_t outSize = 0;
    EXPECT(llPrmBuildRtr2rts({qpn, 0x123, 4, 7, 7, 14}, &in, &outSize) == nullptr);
    EXPECT_EQ((int)modify(in, outSize), 0);
  }

  // An RDMA write WQE at WQEBB `index`, written field by field (mlx5_wqe_ctrl_seg, mlx5_wqe_raddr_seg,
  // mlx5_wqe_data_seg; big-endian), then the doorbell record and the BlueFlame register.
  void postWrite(uint16_t index, uint64_t laddr, uint32_t lkey, uint64_t raddr, uint32_t rkey, uint32_t len) {
    uint8_t* w = mem.p.get() + kSqOffset + (index % (1u << kLogSq)) * 64;
    std::memset(w, 0, 64);
    putBe32(w + 0, (uint32_t)index << 8 | 0x08);  // opcode RDMA_WRITE
    putBe32(w + 4, qpn << 8 | 3);                 // ctrl + raddr + data: 3 units of 16 bytes
    w[11] = 0x08;                                 // CQ_UPDATE: a CQE even on success
    putBe64(w + 16, raddr);
    putBe32(w + 24, rkey);
    putBe32(w + 32, len);
    putBe32(w + 36, lkey);
    putBe64(w + 40, laddr);
    uint32_t producer = 0;
    putBe32(reinterpret_cast<uint8_t*>(&producer), (uint32_t)(index + 1));
    __atomic_store_n(reinterpret_cast<uint32_t*>(mem.p.get() + kQpDbrOffset + 4), producer, __ATOMIC_RELEASE);
    uint64_t ctrl8;
    std::memcpy(&ctrl8, w, 8);
    __atomic_store_n(reinterpret_cast<uint64_t*>(uar->reg_addr), ctrl8, __ATOMIC_RELEASE);
  }

  // Waits (up to a second) for CQE `index` to leave the invalid state; returns its bytes.
  const uint8_t* waitCqe(uint32_t index) {
    const uint8_t* cqe = mem.p.get() + kCqOffset + (index % (1u << kLogCq)) * 64;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    // The device stores the CQE's last dword (wqe_counter .. op_own) with release semantics; this acquire
    // load of the same dword makes the rest of the CQE visible once op_own is valid.
    auto opOwn = [cqe] {
      uint32_t last = __atomic_load_n(reinterpret_cast<const uint32_t*>(cqe + 60), __ATOMIC_ACQUIRE);
      uint8_t bytes[4];
      std::memcpy(bytes, &last, 4);
      return bytes[3];
    };
    while ((opOwn() >> 4) == 0xf) {
      EXPECT_MSG(std::chrono::steady_clock::now() < deadline, "no CQE %u after the doorbell", index);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return cqe;
  }

  const llVerbs* v;
  Block mem;
  ibv_context* ctx = nullptr;
  ibv_pd* pd = nullptr;
  uint32_t pdn = 0, eqn = 99, cqn = 0, qpn = 0;
  mlx5dv_devx_umem* umem = nullptr;
  mlx5dv_devx_uar* uar = nullptr;
  mlx5dv_devx_obj* cqObj = nullptr;
  mlx5dv_devx_obj* qpObj = nullptr;
};

// A registered region of `bytes` bytes with every remote right.
struct Region {
  Region(const llVerbs* v, ibv_pd* pd, size_t bytes) : v(v), mem(bytes) {
    int access =
        IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
    mr = v->regMr(pd, mem.p.get(), bytes, access);
    EXPECT(mr != nullptr);
  }
  ~Region() { v->deregMr(mr); }
  const llVerbs* v;
  Block mem;
  ibv_mr* mr = nullptr;
};

// Runs the case `name` again in a fresh process of this executable with LLEP_MODEL_LINK=link, and `body` there:
// parameters are read once per process, and an earlier case in this one may have opened a device already.
void withLink(const char* name, const char* link, void (*body)()) {
  if (getenv(kLinkChildEnv)) {
    EXPECT_MSG(std::strcmp(llParamModelLink(), link) == 0, "LLEP_MODEL_LINK is '%s'", llParamModelLink());
    body();
    return;
  }
  pid_t pid = fork();
  EXPECT(pid >= 0);
  if (pid == 0) {
    setenv("LLEP_MODEL_LINK", link, 1);
    setenv(kLinkChildEnv, "1", 1);
    alarm(20);  // survives exec: a hung child dies instead of hanging the test
    execl("/proc/self/exe", "test_verbs", name, (char*)nullptr);
    std::_Exit(127);
  }
  int status = 0;
  EXPECT(waitpid(pid, &status, 0) == pid);
  EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "LLEP_MODEL_LINK=%s child status 0x%x", link, status);
}

// The model's Ethernet GID table (provider.h): entries 0..3 set, 4..7 empty.
constexpr int kEthGids = 8;
constexpr uint32_t kEthGidTypes[4] = {IBV_GID_TYPE_ROCE_V1, IBV_GID_TYPE_ROCE_V2, IBV_GID_TYPE_ROCE_V1,
                                      IBV_GID_TYPE_ROCE_V2};

ibv_gid gidAt(const llVerbs* v, ibv_context* ctx, uint32_t index) {
  ibv_gid_entry e{};
  EXPECT_EQ(v->queryGidEx(ctx, 1, index, &e, 0), 0);
  return e.gid;
}

std::vector<uint8_t> macOf(uint16_t lid) { return {0x02, 'l', 0, 0, (uint8_t)(lid >> 8), (uint8_t)lid}; }

// An address handle towards dgid from GID index sgid; nullptr (errno set) when refused.
ibv_ah* addressHandle(const llVerbs* v, ibv_pd* pd, const ibv_gid& dgid, uint8_t sgid, bool global = true) {
  ibv_ah_attr attr{};
  attr.is_global = global;
  attr.port_num = 1;
  attr.grh.dgid = dgid;
  attr.grh.sgid_index = sgid;
  attr.grh.hop_limit = 64;
  errno = 0;
  return v->createAh(pd, &attr);
}

// The MAC an address handle resolved (mlx5dv_init_obj(AH) -> av->rmac); the handle is destroyed.
std::vector<uint8_t> resolvedMac(const llVerbs* v, ibv_ah* ah) {
  EXPECT(ah != nullptr);
  mlx5dv_ah dv{};
  mlx5dv_obj obj{};
  obj.ah.in = ah;
  obj.ah.out = &dv;
  EXPECT_EQ(v->mlx5dvInitObj(&obj, MLX5DV_OBJ_AH), 0);
  std::vector<uint8_t> mac(dv.av->rmac, dv.av->rmac + 6);
  EXPECT_EQ(v->destroyAh(ah), 0);
  return mac;
}

// A RoCE v2 path from GID index 3 towards `peer`'s IPv4 GID and its MAC.
LlPrmAddressPath rocePath(const Device& peer) {
  LlPrmAddressPath path{};
  path.grh = true;
  std::memcpy(path.rgid, gidAt(peer.v, peer.ctx, 3).raw, 16);
  path.srcAddrIndex = 3;
  path.hopLimit = 64;
  path.tclass = 0x68;
  path.dscp = 0x68 >> 2;
  path.udpSport = 0xc123;
  std::vector<uint8_t> mac = macOf(llnic::modelLid(peer.ctx));
  std::memcpy(path.rmac, mac.data(), 6);
  path.vhcaPortNum = 1;
  return path;
}

void ethPortGidTableAndAddressHandles() {
  const llVerbs* v = modelVerbs();
  Device a(v), b(v);
  const uint16_t lid = llnic::modelLid(a.ctx);
  ibv_port_attr port{};
  EXPECT_EQ(v->queryPort(a.ctx, 1, &port), 0);
  EXPECT_EQ((int)port.link_layer, IBV_LINK_LAYER_ETHERNET);
  EXPECT_EQ((int)port.lid, 0);
  EXPECT_EQ(port.gid_tbl_len, kEthGids);
  // Two addresses, each as RoCE v1 and v2: fe80::02:6c:<LID>:<pid> and ::ffff:10.108.<LID>.
  for (uint32_t i = 0; i < 4; i++) {
    ibv_gid_entry e{};
    EXPECT_EQ(v->queryGidEx(a.ctx, 1, i, &e, 0), 0);
    EXPECT_EQ(e.gid_index, i);
    EXPECT_EQ(e.gid_type, kEthGidTypes[i]);
    const uint8_t* g = e.gid.raw;
    EXPECT_EQ((int)(g[10] << 8 | g[11]), i < 2 ? (int)lid : 0xffff);
    if (i < 2) EXPECT(g[0] == 0xfe && g[1] == 0x80 && getBe32(g + 12) == (uint32_t)getpid());
    else EXPECT(g[12] == 10 && g[13] == 108 && (g[14] << 8 | g[15]) == lid);
    ibv_gid plain{};
    EXPECT_EQ(v->queryGid(a.ctx, 1, (int)i, &plain), 0);
    EXPECT(std::memcmp(plain.raw, g, 16) == 0);
  }
  // Empty entries: ENODATA from ibv_query_gid_ex, the zero GID from ibv_query_gid; past the table: EINVAL.
  for (uint32_t i = 4; i < kEthGids; i++) {
    ibv_gid_entry e{};
    EXPECT_EQ(v->queryGidEx(a.ctx, 1, i, &e, 0), ENODATA);
    ibv_gid plain;
    std::memset(plain.raw, 0xee, 16);
    EXPECT_EQ(v->queryGid(a.ctx, 1, (int)i, &plain), 0);
    EXPECT(std::all_of(plain.raw, plain.raw + 16, [](uint8_t x) { return x == 0; }));
  }
  ibv_gid_entry e{};
  EXPECT_EQ(v->queryGidEx(a.ctx, 1, kEthGids, &e, 0), EINVAL);
  EXPECT_EQ(v->queryGidEx(a.ctx, 1, 0, &e, 1), EINVAL);  // flags must be 0
  // An address handle to either address of a context resolves that context's MAC.
  EXPECT(resolvedMac(v, addressHandle(v, a.pd, gidAt(v, b.ctx, 3), 3)) == macOf(llnic::modelLid(b.ctx)));
  EXPECT(resolvedMac(v, addressHandle(v, a.pd, gidAt(v, b.ctx, 0), 1)) == macOf(llnic::modelLid(b.ctx)));
  EXPECT(resolvedMac(v, addressHandle(v, a.pd, gidAt(v, a.ctx, 3), 3)) == macOf(lid));
  // A stale neighbour entry is what the handle resolves until it is cleared.
  const uint8_t stale[6] = {0x02, 0x6c, 0, 0, 0xde, 0xad};
  llnic::modelSetStaleMac(llnic::modelLid(b.ctx), stale);
  EXPECT(resolvedMac(v, addressHandle(v, a.pd, gidAt(v, b.ctx, 3), 3)) == std::vector<uint8_t>(stale, stale + 6));
  llnic::modelSetStaleMac(llnic::modelLid(b.ctx), nullptr);
  EXPECT(resolvedMac(v, addressHandle(v, a.pd, gidAt(v, b.ctx, 3), 3)) == macOf(llnic::modelLid(b.ctx)));
  // A GID of nobody is unreachable; a RoCE handle must be global and leave from a set entry.
  ibv_gid nobody{};
  nobody.raw[0] = 0x20;
  nobody.raw[1] = 0x01;
  nobody.raw[15] = 1;
  EXPECT(addressHandle(v, a.pd, nobody, 3) == nullptr && errno == EHOSTUNREACH);
  EXPECT(addressHandle(v, a.pd, gidAt(v, b.ctx, 3), 3, false) == nullptr && errno == EINVAL);
  EXPECT(addressHandle(v, a.pd, gidAt(v, b.ctx, 3), 5) == nullptr && errno == EINVAL);
  // QUERY_HCA_CAP agrees: an Ethernet port with RoCE.
  std::vector<uint8_t> in;
  size_t outSize = 0;
  llPrmBuildQueryHcaCap(kLlPrmHcaCapOpModGeneralCur, &in, &outSize);
  std::vector<uint8_t> out(outSize);
  EXPECT_EQ(v->devxGeneralCmd(a.ctx, in.data(), in.size(), out.data(), out.size()), 0);
  LlPrmGeneralCaps caps = llPrmDecodeGeneralCaps(out.data());
  EXPECT_EQ(caps.portType, kLlPrmPortTypeEth);
  EXPECT(caps.roce);
}

// A write from `from` to `to` (first 64 bytes of each region) as WQE `index`; returns the CQE's syndrome byte
// (0 for a success CQE).
int writeSyndrome(Device& from, uint16_t index, const Region& src, const Region& dst) {
  from.postWrite(index, src.mem.addr(), src.mr->lkey, dst.mem.addr(), dst.mr->rkey, 64);
  const uint8_t* cqe = from.waitCqe(index);
  return cqe[kCqeOpOwn] >> 4 == 0 ? 0 : cqe[55];
}

void ethRtrRoutesByGidAndMac() {
  const llVerbs* v = modelVerbs();
  Device a(v), b(v), c(v), d(v);
  for (Device* x : {&a, &b, &c, &d}) {
    x->createCqQp();
    x->toInit();
  }
  // RTR needs grh and a set source GID entry; a refused RTR leaves the QP in INIT.
  LlPrmAddressPath path = rocePath(b);
  path.grh = false;
  EXPECT_EQ((int)a.toRtr(path, b.qpn), 0x03);
  path = rocePath(b);
  path.srcAddrIndex = 5;
  EXPECT_EQ((int)a.toRtr(path, b.qpn), 0x03);
  EXPECT(llnic::modelNic(a.ctx)->qp(a.qpn)->state() == llnic::QpState::kInit);
  EXPECT_EQ((int)a.toRtr(rocePath(b), b.qpn), 0);
  a.toRts();
  EXPECT_EQ((int)b.toRtr(rocePath(a), a.qpn), 0);
  b.toRts();
  llnic::ModelQpView view;
  EXPECT(llnic::modelQpView(a.ctx, a.qpn, &view));
  EXPECT(view.grh);
  EXPECT_EQ(view.srcAddrIndex, 3u);
  EXPECT_EQ(view.hopLimit, 64u);
  EXPECT_EQ(view.tclass, 0x68u);
  EXPECT_EQ(view.dscp, 0x68u >> 2);
  EXPECT_EQ(view.udpSport, 0xc123u);
  EXPECT(std::memcmp(view.rgid, gidAt(v, b.ctx, 3).raw, 16) == 0);
  EXPECT(std::vector<uint8_t>(view.rmac, view.rmac + 6) == macOf(llnic::modelLid(b.ctx)));
  EXPECT_EQ(view.rlid, 0u);
  EXPECT_EQ(view.destLid, (uint32_t)llnic::modelLid(b.ctx));
  Region src(v, a.pd, 4096), dst(v, b.pd, 4096);
  std::memset(src.mem.p.get(), 0x5a, 64);
  EXPECT_EQ(writeSyndrome(a, 0, src, dst), 0);
  EXPECT(dst.mem.p.get()[0] == 0x5a && dst.mem.p.get()[63] == 0x5a);
  // b's GID with a's MAC, and b's MAC with a GID of nobody: RTR accepts both (firmware does not check that a path
  // leads anywhere); the packets are lost, and the first WQE completes with transport retries exceeded.
  std::memset(dst.mem.p.get(), 0, 64);
  path = rocePath(b);
  std::vector<uint8_t> aMac = macOf(llnic::modelLid(a.ctx));
  std::memcpy(path.rmac, aMac.data(), 6);
  EXPECT_EQ((int)c.toRtr(path, b.qpn), 0);
  c.toRts();
  path = rocePath(b);
  path.rgid[15] ^= 0x40;  // ::ffff:10.108.x.y of a LID no context has
  EXPECT_EQ((int)d.toRtr(path, b.qpn), 0);
  d.toRts();
  for (Device* x : {&c, &d}) {
    EXPECT(llnic::modelQpView(x->ctx, x->qpn, &view));
    EXPECT_EQ(view.destLid, 0u);
    Region from(v, x->pd, 4096);
    std::memset(from.mem.p.get(), 0x77, 64);
    EXPECT_EQ(writeSyndrome(*x, 0, from, dst), 0x15);  // MLX5_CQE_SYNDROME_TRANSPORT_RETRY_EXC_ERR
  }
  EXPECT(std::all_of(dst.mem.p.get(), dst.mem.p.get() + 64, [](uint8_t x) { return x == 0; }));
}

void unknownLinkRefused() {
  const llVerbs* v = modelVerbs();
  ibv_context* ctx = nullptr;
  EXPECT(llVerbsOpenDevx(v, nullptr, &ctx) == llSystemError);
  EXPECT_MSG(std::strstr(llLastError(), "mlx5dv_open_device(llep_model0, DEVX) failed: Invalid argument"), "%s",
             llLastError());
}

}  // namespace

LL_TEST(load_once_selects_model) {
  const llVerbs* a = modelVerbs();
  const llVerbs* b = nullptr;
  EXPECT_LL_OK(llVerbsLoad(&b));
  EXPECT(a == b && a == llModelVerbs());
}

LL_TEST(model_device_list_port_and_gid) {
  const llVerbs* v = modelVerbs();
  int n = -1;
  ibv_device** list = v->getDeviceList(&n);
  EXPECT(list != nullptr);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(std::string(v->getDeviceName(list[0])), std::string("llep_model0"));
  EXPECT(list[1] == nullptr);
  v->freeDeviceList(list);
  ibv_context* ctx = nullptr;
  EXPECT(llVerbsOpenDevx(v, "mlx5_7", &ctx) == llSystemError);
  EXPECT_MSG(std::strstr(llLastError(), "no RDMA device named mlx5_7"), "%s", llLastError());
  EXPECT_LL_OK(llVerbsOpenDevx(v, nullptr, &ctx));
  ibv_port_attr port{};
  EXPECT_EQ(v->queryPort(ctx, 1, &port), 0);
  EXPECT_EQ((int)port.state, (int)IBV_PORT_ACTIVE);
  EXPECT_EQ((int)port.link_layer, IBV_LINK_LAYER_INFINIBAND);
  EXPECT(port.lid != 0);
  EXPECT_EQ(port.lid, llnic::modelLid(ctx));
  EXPECT(v->queryPort(ctx, 2, &port) != 0);
  ibv_gid gid{};
  EXPECT_EQ(v->queryGid(ctx, 1, 0, &gid), 0);
  EXPECT(gid.raw[0] == 0xfe && gid.raw[1] == 0x80);
  EXPECT_EQ((uint32_t)getBe32(gid.raw + 12), (uint32_t)getpid());
  EXPECT(v->queryGid(ctx, 1, 1, &gid) != 0);
  EXPECT_EQ(v->closeDevice(ctx), 0);
}

LL_TEST(model_pd_and_memory_registration) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  EXPECT(d.pdn != 0);
  {
    Region r(v, d.pd, 4096);
    EXPECT(r.mr->lkey != 0 && r.mr->rkey != 0);
    EXPECT(r.mr->addr == r.mem.p.get() && r.mr->length == 4096);
    llnic::ProtectionDomain& pd = llnic::modelNic(d.ctx)->pd();
    EXPECT(pd.check(r.mr->rkey, r.mem.addr(16), 64, llnic::kAccessRemoteWrite) == llnic::KeyCheck::kOk);
    EXPECT(pd.check(r.mr->rkey, r.mem.addr(4090), 64, 0) == llnic::KeyCheck::kOutOfBounds);
  }
  // Remote write without local write is refused, as verbs require; dma-buf is not modelled.
  uint8_t buf[64];
  errno = 0;
  EXPECT(v->regMr(d.pd, buf, sizeof(buf), IBV_ACCESS_REMOTE_WRITE) == nullptr && errno == EINVAL);
  EXPECT(v->regDmabufMr(d.pd, 0, 64, 0, 3, IBV_ACCESS_LOCAL_WRITE) == nullptr && errno == EOPNOTSUPP);
}

LL_TEST(model_create_cq_and_qp_from_prm_encoders) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  d.createCqQp();
  llnic::ModelCqView cq;
  EXPECT(llnic::modelCqView(d.ctx, d.cqn, &cq));
  EXPECT_EQ(cq.ringAddr, d.mem.addr(kCqOffset));
  EXPECT_EQ(cq.logSize, kLogCq);
  EXPECT_EQ(cq.dbrecAddr, d.mem.addr(kCqDbrOffset));
  EXPECT_EQ(cq.uarPage, d.uar->page_id);
  llnic::ModelQpView qp;
  EXPECT(llnic::modelQpView(d.ctx, d.qpn, &qp));
  EXPECT_EQ(qp.sqAddr, d.mem.addr(kSqOffset));
  EXPECT_EQ(qp.logSqBbs, kLogSq);
  EXPECT_EQ(qp.dbrecAddr, d.mem.addr(kQpDbrOffset));
  EXPECT_EQ(qp.cqnSnd, d.cqn);
  EXPECT_EQ(qp.pd, d.pdn);
  llnic::NicModel* nic = llnic::modelNic(d.ctx);
  EXPECT(nic->cq(d.cqn) != nullptr);
  EXPECT(nic->qp(d.qpn) != nullptr);
  EXPECT(nic->qp(d.qpn)->state() == llnic::QpState::kReset);
  // A CQ that a QP uses is busy; the QP goes first.
  EXPECT_EQ(v->devxObjDestroy(d.cqObj), EBUSY);
  EXPECT_EQ(v->devxObjDestroy(d.qpObj), 0);
  EXPECT_EQ(v->devxObjDestroy(d.cqObj), 0);
  EXPECT(!llnic::modelQpView(d.ctx, d.qpn, &qp));
}

LL_TEST(model_qp_transitions_reach_rts) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  d.createCqQp();
  d.connect(llnic::modelLid(d.ctx), d.qpn);
  llnic::ModelQpView qp;
  EXPECT(llnic::modelQpView(d.ctx, d.qpn, &qp));
  EXPECT_EQ(qp.port, 1u);
  EXPECT(qp.remoteRead && qp.remoteWrite && qp.remoteAtomic);
  EXPECT_EQ(qp.atomicMode, kLlPrmQpcAtomicModeUpTo8B);
  EXPECT_EQ(qp.mtu, (uint32_t)IBV_MTU_4096);
  EXPECT_EQ(qp.remoteQpn, d.qpn);
  EXPECT_EQ(qp.rlid, (uint32_t)llnic::modelLid(d.ctx));
  EXPECT_EQ(qp.nextSendPsn, 0x123u);
  EXPECT(llnic::modelNic(d.ctx)->qp(d.qpn)->state() == llnic::QpState::kRts);
}

LL_TEST(model_doorbell_executes_loopback_write) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  d.createCqQp();
  d.connect(llnic::modelLid(d.ctx), d.qpn);
  Region src(v, d.pd, 4096), dst(v, d.pd, 4096);
  for (int i = 0; i < 256; i++) src.mem.p.get()[i] = (uint8_t)(i * 7 + 1);
  for (uint16_t i = 0; i < 3; i++) {
    d.postWrite(i, src.mem.addr(64 * i), src.mr->lkey, dst.mem.addr(100 * i), dst.mr->rkey, 64);
    const uint8_t* cqe = d.waitCqe(i);
    EXPECT_EQ((int)(cqe[kCqeOpOwn] >> 4), 0);  // MLX5_CQE_REQ
    EXPECT_EQ(getBe32(cqe + 44), 64u);         // byte_cnt
    EXPECT_EQ((int)(cqe[60] << 8 | cqe[61]), (int)i);
    EXPECT(std::memcmp(dst.mem.p.get() + 100 * i, src.mem.p.get() + 64 * i, 64) == 0);
  }
}

LL_TEST(model_write_between_two_contexts) {
  const llVerbs* v = modelVerbs();
  Device a(v), b(v);
  a.createCqQp();
  b.createCqQp();
  EXPECT(llnic::modelLid(a.ctx) != llnic::modelLid(b.ctx));
  a.connect(llnic::modelLid(b.ctx), b.qpn);
  b.connect(llnic::modelLid(a.ctx), a.qpn);
  Region src(v, a.pd, 4096), dst(v, b.pd, 4096);
  std::memset(src.mem.p.get(), 0x5a, 128);
  a.postWrite(0, src.mem.addr(), src.mr->lkey, dst.mem.addr(8), dst.mr->rkey, 128);
  EXPECT_EQ((int)(a.waitCqe(0)[kCqeOpOwn] >> 4), 0);
  EXPECT(dst.mem.p.get()[8] == 0x5a && dst.mem.p.get()[135] == 0x5a && dst.mem.p.get()[136] == 0);
  // A key B never issued fails at B: a remote access error at A.
  a.postWrite(1, src.mem.addr(), src.mr->lkey, dst.mem.addr(8), dst.mr->rkey + 0x10000, 128);
  const uint8_t* cqe = a.waitCqe(1);
  EXPECT_EQ((int)(cqe[kCqeOpOwn] >> 4), 0xd);  // MLX5_CQE_REQ_ERR
  EXPECT_EQ((int)cqe[55], 0x13);               // MLX5_CQE_SYNDROME_REMOTE_ACCESS_ERR
}

LL_TEST(model_malformed_commands_fail_with_status) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  std::vector<uint8_t> in, out(64);
  size_t outSize = 0;
  // Unknown opcode.
  std::vector<uint8_t> bogus(64, 0);
  bogus[0] = 0x7f;
  errno = 0;
  EXPECT(v->devxObjCreate(d.ctx, bogus.data(), bogus.size(), out.data(), out.size()) == nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0x02);  // bad operation
  EXPECT(llPrmDecodeStatus(out.data()).syndrome != 0);
  // A CQ in a UMEM that does not exist.
  LlPrmCreateCqParams cq = d.cqParams();
  cq.cqUmemId = 777;
  EXPECT(llPrmBuildCreateCq(cq, &in, &outSize) == nullptr);
  out.assign(outSize, 0);
  EXPECT(v->devxObjCreate(d.ctx, in.data(), in.size(), out.data(), out.size()) == nullptr);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0x03);  // bad parameter
  // A ring that overruns its UMEM.
  cq = d.cqParams();
  cq.cqUmemOffset = d.mem.size - 512;
  EXPECT(llPrmBuildCreateCq(cq, &in, &outSize) == nullptr);
  EXPECT(v->devxObjCreate(d.ctx, in.data(), in.size(), out.data(), out.size()) == nullptr);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0x03);
  // A command cut short.
  EXPECT(llPrmBuildCreateCq(d.cqParams(), &in, &outSize) == nullptr);
  EXPECT(v->devxObjCreate(d.ctx, in.data(), 64, out.data(), out.size()) == nullptr);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status,
            0x50);  // bad input length
  // A QP on a PD that was never allocated.
  d.createCqQp();
  LlPrmCreateQpParams qp = d.qpParams();
  qp.pd = 0x4242;
  EXPECT(llPrmBuildCreateQp(qp, &in, &outSize) == nullptr);
  out.assign(outSize, 0);
  EXPECT(v->devxObjCreate(d.ctx, in.data(), in.size(), out.data(), out.size()) == nullptr);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0x03);
  // RTR2RTS from RST is a bad QP state; a transition naming another QP is a bad parameter.
  int rc = 0;
  EXPECT(llPrmBuildRtr2rts({d.qpn, 0, 4, 7, 7, 14}, &in, &outSize) == nullptr);
  EXPECT_EQ((int)d.modify(in, outSize, &rc), 0x10);
  EXPECT_EQ(rc, EINVAL);
  EXPECT(llPrmBuildRtr2rts({d.qpn + 1, 0, 4, 7, 7, 14}, &in, &outSize) == nullptr);
  EXPECT_EQ((int)d.modify(in, outSize), 0x03);
  EXPECT(llnic::modelNic(d.ctx)->qp(d.qpn)->state() == llnic::QpState::kReset);
}

LL_TEST(model_query_hca_cap) {
  const llVerbs* v = modelVerbs();
  Device d(v);
  std::vector<uint8_t> in;
  size_t outSize = 0;
  llPrmBuildQueryHcaCap(kLlPrmHcaCapOpModGeneralCur, &in, &outSize);
  std::vector<uint8_t> out(outSize, 0xee);
  EXPECT_EQ(v->devxGeneralCmd(d.ctx, in.data(), in.size(), out.data(), out.size()), 0);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0);
  LlPrmGeneralCaps g = llPrmDecodeGeneralCaps(out.data());
  EXPECT_EQ(g.logMaxQpSz, 15u);
  EXPECT_EQ(g.logMaxCqSz, 22u);
  EXPECT_EQ(g.portType, kLlPrmPortTypeIb);
  EXPECT(g.atomic && !g.roce);
  llPrmBuildQueryHcaCap(kLlPrmHcaCapOpModAtomicCur, &in, &outSize);
  EXPECT_EQ(v->devxGeneralCmd(d.ctx, in.data(), in.size(), out.data(), out.size()), 0);
  LlPrmAtomicCaps a = llPrmDecodeAtomicCaps(out.data());
  EXPECT_EQ(a.atomicReq8BEndiannessMode, 1u);
  EXPECT(a.atomicOperations & kLlPrmAtomicOpsMaskedFetchAdd);
  EXPECT(a.atomicSizeQp & (1u << 3));
  // Too small an output buffer for the capability.
  EXPECT_EQ(v->devxGeneralCmd(d.ctx, in.data(), in.size(), out.data(), 64), EINVAL);
  EXPECT_EQ((int)llPrmDecodeStatus(out.data()).status, 0x51);
}

// LLEP_MODEL_LINK=eth: an Ethernet port without a LID; the GID table holds each address as RoCE v1 and v2,
// then empty entries, as ibv_query_gid_ex and ibv_query_gid report them; address handles resolve each
// context's MAC (or a stale one the test hook set) and refuse what the kernel would; QUERY_HCA_CAP says RoCE.
LL_TEST(model_eth_port_gid_table_and_address_handles) {
  withLink("model_eth_port_gid_table_and_address_handles", "eth", ethPortGidTableAndAddressHandles);
}

// LLEP_MODEL_LINK=eth: INIT2RTR needs grh and a set src_addr_index (else bad parameter, QP still in INIT); the
// QP reaches the context that rgid names when rmac is its MAC, and writes land; a wrong MAC or a GID of nobody
// passes RTR, as on a NIC, and the first write completes with transport retries exceeded.
LL_TEST(model_eth_rtr_routes_by_gid_and_mac) {
  withLink("model_eth_rtr_routes_by_gid_and_mac", "eth", ethRtrRoutesByGidAndMac);
}

// A link layer that is neither ib nor eth: the device does not open.
LL_TEST(model_unknown_link_refused) { withLink("model_unknown_link_refused", "roce", unknownLinkRefused); }

LL_TEST(missing_rdma_core_is_system_error) {
  llVerbs table;
  EXPECT(llVerbsLoadLibraries("libibverbs_absent.so.1", "libmlx5.so.1", &table) == llSystemError);
  const char* msg = llLastError();
  EXPECT_MSG(std::strncmp(msg, "rdma-core not found: libibverbs_absent.so.1: ", 45) == 0, "%s", msg);
  EXPECT(std::strchr(msg, '\n') == nullptr);
}

// In a fresh process without LLEP_IB_DEVICE: rdma-core loads and finds no device here (a clear error), or is
// absent (llSystemError naming the library); on a machine with an RDMA device, opening succeeds.
static int rdmaCoreChild() {
  const llVerbs* v = nullptr;
  llResult_t r = llVerbsLoad(&v);
  if (r != llSuccess) {
    std::printf("child: load: %s\n", llLastError());
    return r == llSystemError && std::strstr(llLastError(), "rdma-core not found: ") ? 0 : 1;
  }
  std::printf("child: loaded %s\n", v->provider);
  ibv_context* ctx = nullptr;
  r = llVerbsOpenDevx(v, nullptr, &ctx);
  if (r == llSuccess) return v->closeDevice(ctx) == 0 ? 0 : 1;
  std::printf("child: open: %s\n", llLastError());
  return r == llSystemError && std::strstr(llLastError(), "no RDMA device found by rdma-core") ? 0 : 1;
}

LL_TEST(rdma_core_path_in_fresh_process) {
  if (getenv(kChildEnv)) std::_Exit(rdmaCoreChild());
  pid_t pid = fork();
  EXPECT(pid >= 0);
  if (pid == 0) {
    unsetenv("LLEP_IB_DEVICE");
    setenv(kChildEnv, "1", 1);
    alarm(10);  // survives exec: a hung child dies instead of hanging the test
    execl("/proc/self/exe", "test_verbs", "rdma_core_path_in_fresh_process", (char*)nullptr);
    std::_Exit(127);
  }
  int status = 0;
  EXPECT(waitpid(pid, &status, 0) == pid);
  EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
}

LL_TEST_MAIN()
