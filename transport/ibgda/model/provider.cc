// The model's verbs table: objects handed to callers are rdma-core's own structures (ibv_device, ibv_context,
// ibv_pd, ibv_mr, mlx5dv_devx_umem, mlx5dv_devx_uar) embedded first in the model's records, so a pointer the
// caller holds leads back to the record; mlx5dv_devx_obj is opaque and stands for an Obj.
#include "transport/ibgda/model/provider.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "param.h"
#include "transport/ibgda/model/be.h"
#include "transport/ibgda/model/cuda_memory.h"
#include "transport/ibgda/model/socket_wire.h"

namespace llnic {
namespace {

// ---- PRM command layouts, as the decoder reads them -------------------------------------------------------
// A field is (first bit, width) from the start of the command's input or output, counting bit 0 as the most
// significant bit of byte 0 (the PRM's numbering). Offsets are absolute (a CQ/QP context field's offset
// already includes where the context sits), transcribed from the mlx5 PRM structures create_cq_in (cq_context
// at 0x80), create_qp_in and rst2init/init2rtr/rtr2rts_qp_in (qpc at 0xc0, its primary_address_path at 0xc0 +
// 0xc0), query_hca_cap_out (capability at 0x80).
struct Bits {
  uint32_t at;
  uint32_t width;
};

// One bit at a time, most significant first: slow and plain, so it shares nothing with prm_cmd.cc.
uint64_t getBits(const uint8_t* buf, Bits f) {
  uint64_t v = 0;
  for (uint32_t b = f.at; b < f.at + f.width; b++) v = (v << 1) | ((buf[b / 8] >> (7 - b % 8)) & 1u);
  return v;
}

void putBits(uint8_t* buf, Bits f, uint64_t v) {
  for (uint32_t i = 0; i < f.width; i++) {
    uint32_t b = f.at + f.width - 1 - i;  // the field's least significant bit is its last
    uint8_t mask = (uint8_t)(0x80u >> (b % 8));
    buf[b / 8] = (v >> i) & 1 ? (uint8_t)(buf[b / 8] | mask) : (uint8_t)(buf[b / 8] & ~mask);
  }
}

namespace cmd {
constexpr uint32_t kOpQueryHcaCap = 0x100, kOpCreateCq = 0x400, kOpCreateQp = 0x500, kOpRst2Init = 0x502,
                   kOpInit2Rtr = 0x503, kOpRtr2Rts = 0x504;
constexpr Bits kOpcode{0x00, 16}, kOpMod{0x30, 16};
constexpr Bits kStatus{0x00, 8}, kSyndrome{0x20, 32};
constexpr size_t kOutHeaderBytes = 16;  // every output used here: status, syndrome, one dword, reserved

// create_cq_in / create_cq_out
constexpr size_t kCreateCqInBytes = 0x880 / 8;
constexpr Bits kCqDbrUmemValid{0x86, 1}, kCqCqeSz{0x88, 3}, kCqOi{0x8e, 1}, kCqDbrUmemId{0xa0, 32},
    kCqLogSize{0xe3, 5}, kCqUarPage{0xe8, 24}, kCqCEqn{0x138, 8}, kCqDbrAddr{0x240, 64},
    kCqUmemOffset{0x280, 64}, kCqUmemId{0x2c0, 32}, kCqUmemValid{0x2e0, 1};
constexpr Bits kOutCqn{0x48, 24};

// create_qp_in / create_qp_out; the qpc fields have the same offsets in the modify commands.
constexpr size_t kQpInBytes = 0x880 / 8;
constexpr Bits kQpSt{0xc8, 8}, kQpPd{0xe8, 24}, kQpMtu{0x100, 3}, kQpLogRqSize{0x109, 4}, kQpNoSq{0x110, 1},
    kQpLogSqSize{0x111, 4}, kQpUarPage{0x128, 24}, kQpRemoteQpn{0x168, 24}, kQpFl{0x180, 1},
    kQpRlid{0x1b0, 16}, kQpVhcaPortNum{0x2a8, 8}, kQpNextSendPsn{0x488, 24}, kQpCqnSnd{0x4a8, 24},
    kQpAtomicMode{0x54c, 4}, kQpRre{0x550, 1}, kQpRwe{0x551, 1}, kQpRae{0x552, 1}, kQpCqnRcv{0x5a8, 24},
    kQpDbrAddr{0x5c0, 64}, kQpRqType{0x625, 3}, kQpDbrUmemValid{0x743, 1}, kQpDbrUmemId{0x7e0, 32},
    kQpWqUmemOffset{0x800, 64}, kQpWqUmemId{0x840, 32}, kQpWqUmemValid{0x860, 1};
constexpr Bits kOutQpn{0x48, 24};
constexpr Bits kModifyQpn{0x48, 24};
// The primary address path's RoCE fields (ads at 0x180): grh (ads 0x28), src_addr_index (0x48), hop_limit
// (0x58), tclass (0x64), rgid_rip (0x80, 16 bytes), dscp (0x10a), udp_sport (0x110), rmac_47_32 and rmac_31_0
// (0x130, together the MAC's 6 bytes in wire order).
constexpr Bits kQpGrh{0x1a8, 1}, kQpSrcAddrIndex{0x1c8, 8}, kQpHopLimit{0x1d8, 8}, kQpTclass{0x1e4, 8},
    kQpDscp{0x28a, 6}, kQpUdpSport{0x290, 16};
constexpr size_t kQpRgidByte = 0x200 / 8, kQpRmacByte = 0x2b0 / 8;
constexpr uint32_t kStRc = 0x0, kRqTypeZeroSize = 0x3;

// query_hca_cap: op_mod = capability type << 1 | current; general caps are type 0, atomic caps type 3.
constexpr size_t kQueryHcaCapInBytes = 0x80 / 8, kQueryHcaCapOutBytes = (0x80 + 0x8000) / 8;
constexpr uint32_t kCap = 0x80;
constexpr Bits kCapLogMaxQpSz{kCap + 0x88, 8}, kCapLogMaxQp{kCap + 0x9b, 5}, kCapLogMaxCqSz{kCap + 0xc8, 8},
    kCapLogMaxCq{kCap + 0xdb, 5}, kCapLogMaxRaReqQp{kCap + 0x14a, 6}, kCapLogMaxRaResQp{kCap + 0x15a, 6},
    kCapPortType{kCap + 0x1b6, 2}, kCapLogMaxMsg{kCap + 0x1c3, 5}, kCapRoce{kCap + 0x21d, 1},
    kCapAtomic{kCap + 0x21e, 1};
constexpr Bits kAtomicEndianness{kCap + 0x40, 2}, kAtomicOperations{kCap + 0x90, 16},
    kAtomicSizeQp{kCap + 0xb0, 16};

// Command status (PRM "Return Status Summary").
constexpr uint8_t kStatOk = 0x00, kStatBadOp = 0x02, kStatBadParam = 0x03, kStatBadQpState = 0x10,
                  kStatBadInputLen = 0x50, kStatBadOutputLen = 0x51;
// Syndromes are firmware-internal numbers that the PRM does not list; the model's own carry "LL" in their top
// bytes so a log shows at once that the model, not a device, refused the command.
enum Syndrome : uint32_t {
  kSynUnknownOpcode = 0x4c4c0001,
  kSynShortInput,
  kSynShortOutput,
  kSynUmemRequired,   // rings and doorbell records must be in UMEM (no PAS lists)
  kSynBadUmem,        // no such UMEM, or the object does not fit inside it
  kSynBadUar,         // uar_page is not a UAR of this context
  kSynBadEqn,         // the only EQ is 0
  kSynCqeSize,        // 64-byte CQEs only
  kSynQpType,         // RC only
  kSynRqUnsupported,  // send-only QPs: zero-size RQ, SQ present
  kSynBadPd,
  kSynBadCqn,
  kSynRejected,  // the model refused the sizes or alignment (NicModel::createCq/createQp)
  kSynQpnMismatch,
  kSynBadPort,
  kSynBadMtu,
  kSynBadRlid,
  kSynQpState,
  kSynCapType,
  kSynGrhRequired,   // Ethernet: llep's RoCE paths say grh (firmware would not insist: see provider.h)
  kSynBadSgidIndex,  // Ethernet: src_addr_index is not a set entry of the GID table
};
}  // namespace cmd

struct CmdResult {
  uint8_t status;
  uint32_t syndrome;
};
constexpr CmdResult kCmdOk{cmd::kStatOk, 0};
CmdResult badParam(uint32_t syndrome) { return {cmd::kStatBadParam, syndrome}; }

// ---- the model's records ----------------------------------------------------------------------------------
constexpr const char* kDeviceName = "llep_model0";
constexpr uint8_t kPort = 1;
constexpr uint32_t kMaxContextsPerRank = 16;
constexpr PeerId kNoContext = 0;  // no context has LID 0: an Ethernet path whose MAC and GID lead nowhere
constexpr size_t kUarPageBytes = 4096;
constexpr size_t kBlueFlameOffset = 0x800;  // first BlueFlame register of an mlx5 UAR page
constexpr uint32_t kCqDbrecBytes = 8;       // consumer index and arm words
constexpr uint32_t kQpDbrecBytes = 8;       // receive and send counters

HostMemory& hostMemory() {
  static HostMemory memory;
  return memory;
}

uint32_t envRank() {
  const char* rank = getenv("RANK");
  return rank ? (uint32_t)strtoul(rank, nullptr, 10) : 0;
}

// Which rank owns a LID (see nextLid).
uint32_t lidRank(PeerId lid) { return lid > 0 ? (uint32_t)(lid - 1) / kMaxContextsPerRank : ~0u; }

// The wire every context of this process sends through. A LID attached here (a context of this process)
// is a direct call into its model; any other LID goes, when a SocketWire is attached (LLEP_MODEL_JOB),
// to the process of the rank that owns it, whose socket-wired context answers. Nothing answers a LID of
// this rank that no open context holds.
class ProcessWire final : public Wire {
 public:
  void attach(PeerId lid, Responder* responder) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (responder) local_[lid] = responder;
    else local_.erase(lid);
  }
  void setSocket(std::shared_ptr<SocketWire> socket) {
    std::lock_guard<std::mutex> lock(mutex_);
    socket_ = std::move(socket);
  }
  bool hasSocket() {
    std::lock_guard<std::mutex> lock(mutex_);
    return socket_ != nullptr;
  }

  WireStatus write(PeerId lid, const WriteMsg& msg) override {
    Responder* r = nullptr;
    std::shared_ptr<SocketWire> s = route(lid, &r);
    if (r) return r->onWrite(msg);
    return s ? s->write((PeerId)lidRank(lid), msg) : WireStatus::kNoResponder;
  }
  AtomicReply atomic(PeerId lid, const AtomicMsg& msg) override {
    Responder* r = nullptr;
    std::shared_ptr<SocketWire> s = route(lid, &r);
    if (r) return r->onAtomic(msg);
    return s ? s->atomic((PeerId)lidRank(lid), msg) : AtomicReply{WireStatus::kNoResponder, 0};
  }

 private:
  std::shared_ptr<SocketWire> route(PeerId lid, Responder** local) {
    if (lid == kNoContext) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = local_.find(lid);
    if (it != local_.end()) {
      *local = it->second;
      return nullptr;
    }
    return lidRank(lid) != envRank() ? socket_ : nullptr;
  }

  std::mutex mutex_;
  std::map<PeerId, Responder*> local_;
  std::shared_ptr<SocketWire> socket_;
};

ProcessWire& processWire() {
  static ProcessWire wire;
  return wire;
}

// LLEP_MODEL_JOB: a directory (absolute path) or a job name (SocketWire::jobDir); empty when unset.
std::string modelJobDir() {
  const char* job = llParamModelJob();
  if (!*job) return std::string();
  return job[0] == '/' ? std::string(job) : SocketWire::jobDir(job);
}

ibv_device* modelDevice() {
  static ibv_device device = [] {
    ibv_device d{};
    d.node_type = IBV_NODE_CA;
    d.transport_type = IBV_TRANSPORT_IB;
    std::snprintf(d.name, sizeof(d.name), "%s", kDeviceName);
    std::snprintf(d.dev_name, sizeof(d.dev_name), "uverbs_llep_model0");
    return d;
  }();
  return &device;
}

struct Context;

struct ContextShell {
  ibv_context ibv;  // first: the caller's ibv_context* is this record's address
  Context* self;
};

struct Umem {
  mlx5dv_devx_umem pub;  // first, as above
  Context* ctx;
  uint64_t addr;
  uint64_t size;
  uint64_t route;  // the RegionRoutes hold of device memory; 0 for host memory
};

struct Mr {
  ibv_mr pub;  // first, as above
  uint64_t route;  // as Umem::route
};

struct Uar {
  mlx5dv_devx_uar pub;
  Context* ctx;
  std::unique_ptr<uint8_t, decltype(&std::free)> page{nullptr, &std::free};
  uint64_t seen = 0;  // the BlueFlame register's value when the watcher last looked
};

struct Obj {
  Context* ctx;
  bool isQp;
  uint32_t number;  // cqn or qpn
};

// An address handle and the address vector mlx5dv_init_obj(MLX5DV_OBJ_AH) exposes.
struct Ah {
  ibv_ah pub;  // first, as above
  mlx5_wqe_av av;
};

struct Context {
  Context(uint16_t lid, bool eth) : lid(lid), eth(eth), routes(hostMemory()), nic(routes.memory(), processWire()) {
    shell.ibv.device = modelDevice();
    shell.ibv.cmd_fd = -1;
    shell.ibv.async_fd = -1;
    shell.ibv.num_comp_vectors = 1;
    shell.self = this;
  }

  // The address of [offset, offset + bytes) inside UMEM umemId, or 0 when it is not all inside.
  uint64_t span(uint32_t umemId, uint64_t offset, uint64_t bytes) const {
    auto it = umems.find(umemId);
    if (it == umems.end()) return 0;
    const Umem& u = *it->second;
    return offset <= u.size && bytes <= u.size - offset ? u.addr + offset : 0;
  }

  // QPs whose UAR page had its BlueFlame register written since the last look.
  std::vector<uint32_t> rungQps() {
    std::lock_guard<std::mutex> lock(mutex);
    std::set<uint32_t> pages;
    for (auto& [id, uar] : uars) {
      uint64_t v = __atomic_load_n(reinterpret_cast<uint64_t*>(uar->pub.reg_addr), __ATOMIC_ACQUIRE);
      if (v != uar->seen) pages.insert(id);
      uar->seen = v;
    }
    std::vector<uint32_t> qpns;
    for (auto& [qpn, view] : qps)
      if (pages.count(view.uarPage)) qpns.push_back(qpn);
    return qpns;
  }

  // The watcher: a doorbell (BlueFlame write) makes the model read the QP's doorbell record and run what it
  // announces. The record is read with acquire semantics, so WQEs written before it are seen.
  void watch() {
    while (!stop.load(std::memory_order_acquire)) {
      std::vector<uint32_t> qpns = rungQps();
      for (uint32_t qpn : qpns) nic.pollSqDoorbell(qpn);
      if (qpns.empty()) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  ContextShell shell{};
  const uint16_t lid;
  const bool eth;  // the port's link layer is Ethernet (RoCE)
  // Registered device memory is reached through the CudaMemory of its GPU, everything else as host memory.
  // Declared before the model, which accesses memory through `routes` until it is destroyed.
  std::map<int, std::unique_ptr<CudaMemory>> gpus;  // by device ordinal, made on first need; under mutex
  RegionRoutes routes;
  NicModel nic;
  std::mutex mutex;  // guards the tables below (the watcher reads uars and qps)
  std::map<uint32_t, std::unique_ptr<ibv_pd>> pds;
  std::map<uint32_t, std::unique_ptr<Mr>> mrs;  // by lkey
  std::map<uint32_t, std::unique_ptr<Umem>> umems;
  std::map<uint32_t, std::unique_ptr<Uar>> uars;
  std::map<Obj*, std::unique_ptr<Obj>> objs;
  std::map<ibv_ah*, std::unique_ptr<Ah>> ahs;
  std::map<uint32_t, ModelCqView> cqs;
  std::map<uint32_t, ModelQpView> qps;
  uint32_t nextPd = 1, nextUmem = 1, nextUar = 1, nextAh = 1;
  std::atomic<bool> stop{false};
  std::thread watcher;
  std::shared_ptr<SocketWire> socket;  // this process's link to other ranks (LLEP_MODEL_JOB), if it holds it
};

Context* contextOf(ibv_context* c) {
  return c && c->device == modelDevice() ? reinterpret_cast<ContextShell*>(c)->self : nullptr;
}

// Verbs report failure as nullptr or an error number, with errno set.
template <typename T>
T* failWith(int err) {
  errno = err;
  return nullptr;
}
int failCode(int err) {
  errno = err;
  return err;
}

// Where the model reaches a region that a UMEM or MR covers: device memory through this context's
// CudaMemory of its GPU (*route: the hold to release with the region), host memory through the routes'
// fallback (*route 0). cudaDeviceOf runs before the lock is taken: its first call may start this library's
// CUDA runtime, which takes a while, and the watcher needs the lock meanwhile.
bool routeRegion(Context& c, uint64_t addr, uint64_t length, uint64_t* route) {
  *route = 0;
  int device = -1;
  if (!cudaDeviceOf(addr, &device)) return true;
  std::lock_guard<std::mutex> lock(c.mutex);
  std::unique_ptr<CudaMemory>& gpu = c.gpus[device];
  if (!gpu) gpu = std::make_unique<CudaMemory>(device);
  if (c.routes.hold(addr, length, *gpu, route) == Status::kOk) return true;
  std::fprintf(stderr, "llep model: cannot route [0x%llx, +%llu) to GPU %d: it wraps, or overlaps another GPU's\n",
               (unsigned long long)addr, (unsigned long long)length, device);
  return false;
}

// Releases what routeRegion held; a host region (route 0) holds nothing.
void unroute(Context& c, uint64_t route) {
  if (route) c.routes.release(route);
}

// ---- GIDs and MACs ----------------------------------------------------------------------------------------
// IB port: one GID, fe80::/64 with an interface id of 02:'l'('l' for llep), the LID (which carries the rank) and
// the pid. Ethernet port: the table a ConnectX port shows for an interface with an IPv6 link-local and one IPv4
// address, each as a RoCE v1 and a RoCE v2 entry, then room for more:
//   0 RoCE v1 fe80::..   1 RoCE v2 fe80::..   2 RoCE v1 ::ffff:10.108.<LID>   3 RoCE v2 ::ffff:10.108.<LID>
//   4..7 empty
constexpr int kEthGidTableLen = 8;
constexpr uint8_t kIpv4Net[2] = {10, 108};  // 10.108.0.0/16: the model's IPv4 subnet ('l' is 108)

int gidTableLen(const Context& c) { return c.eth ? kEthGidTableLen : 1; }

void linkLocalGid(uint16_t lid, uint8_t* g) {
  std::memset(g, 0, 16);
  g[0] = 0xfe;
  g[1] = 0x80;
  g[8] = 0x02;
  g[9] = 'l';
  storeBe16(g + 10, lid);
  storeBe32(g + 12, (uint32_t)getpid());
}

void ipv4Gid(uint16_t lid, uint8_t* g) {
  std::memset(g, 0, 16);
  g[10] = g[11] = 0xff;
  g[12] = kIpv4Net[0];
  g[13] = kIpv4Net[1];
  storeBe16(g + 14, lid);
}

// Entry `index` of the context's table; false for an empty one.
bool gidEntry(const Context& c, uint32_t index, ibv_gid_entry* e) {
  *e = ibv_gid_entry{};
  e->gid_index = index;
  e->port_num = kPort;
  if (!c.eth) {
    e->gid_type = IBV_GID_TYPE_IB;
    linkLocalGid(c.lid, e->gid.raw);
    return index == 0;
  }
  if (index > 3) return false;
  e->gid_type = index % 2 ? IBV_GID_TYPE_ROCE_V2 : IBV_GID_TYPE_ROCE_V1;
  if (index < 2)
    linkLocalGid(c.lid, e->gid.raw);
  else
    ipv4Gid(c.lid, e->gid.raw);
  return true;
}

// The LID of the context a GID of the model names (either address form), or kNoContext.
PeerId gidLid(const uint8_t* g) {
  static const uint8_t linkLocal[10] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 'l'};
  static const uint8_t ipv4[14] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, kIpv4Net[0], kIpv4Net[1]};
  if (std::memcmp(g, linkLocal, sizeof(linkLocal)) == 0) return (PeerId)(g[10] << 8 | g[11]);
  if (std::memcmp(g, ipv4, sizeof(ipv4)) == 0) return (PeerId)(g[14] << 8 | g[15]);
  return kNoContext;
}

// Stale neighbour entries (modelSetStaleMac), by LID.
struct StaleMacs {
  std::mutex mutex;
  std::map<uint16_t, std::array<uint8_t, 6>> byLid;
};
StaleMacs& staleMacs() {
  static StaleMacs stale;
  return stale;
}

// What the model's neighbour table answers for context `lid`: its MAC, or a stale one a test put there.
void neighbourMac(uint16_t lid, uint8_t* mac) {
  StaleMacs& stale = staleMacs();
  std::lock_guard<std::mutex> lock(stale.mutex);
  auto it = stale.byLid.find(lid);
  if (it != stale.byLid.end())
    std::memcpy(mac, it->second.data(), 6);
  else
    modelMac(lid, mac);
}

// ---- device list, contexts, port, GID ---------------------------------------------------------------------

ibv_device** getDeviceList(int* n) {
  if (n) *n = 1;
  return new ibv_device* [2] { modelDevice(), nullptr };
}

void freeDeviceList(ibv_device** list) { delete[] list; }

const char* getDeviceName(ibv_device* device) { return device ? device->name : nullptr; }

// LLEP_MODEL_LINK: ib or eth. Anything else is refused, so a misspelt value cannot quietly test the other one.
bool ethernetLink(bool* eth) {
  const char* link = llParamModelLink();
  *eth = std::strcmp(link, "eth") == 0;
  if (*eth || std::strcmp(link, "ib") == 0) return true;
  std::fprintf(stderr, "llep model: LLEP_MODEL_LINK='%s' is neither ib nor eth\n", link);
  return false;
}

uint16_t nextLid() {
  static std::atomic<uint32_t> opened{0};
  return (uint16_t)(1 + envRank() * kMaxContextsPerRank + opened++ % kMaxContextsPerRank);
}

// With LLEP_MODEL_JOB set, the context opened while no other holds the process's SocketWire takes it: it
// listens as rank RANK and answers every operation that other ranks send here (one such context per
// process at a time; later ones reach only this process's contexts).
ibv_context* openDevice(ibv_device* device) {
  if (device != modelDevice()) return failWith<ibv_context>(ENODEV);
  bool eth = false;
  if (!ethernetLink(&eth)) return failWith<ibv_context>(EINVAL);
  auto* ctx = new Context(nextLid(), eth);
  const std::string dir = modelJobDir();
  if (!dir.empty() && !processWire().hasSocket()) {
    SocketWireOptions options;
    options.dir = dir;
    options.self = (PeerId)envRank();
    auto socket = std::make_shared<SocketWire>(options);
    if (!socket->start(ctx->nic)) {
      std::fprintf(stderr, "llep model: rank %u cannot listen in %s: %s\n", envRank(), dir.c_str(),
                   socket->error().c_str());
      delete ctx;
      return failWith<ibv_context>(EIO);
    }
    ctx->socket = socket;
    processWire().setSocket(std::move(socket));
  }
  processWire().attach(ctx->lid, &ctx->nic);
  ctx->watcher = std::thread([ctx] { ctx->watch(); });
  return &ctx->shell.ibv;
}

// DevX is always available on the model, so the attributes change nothing.
ibv_context* mlx5dvOpenDevice(ibv_device* device, mlx5dv_context_attr*) { return openDevice(device); }

// Everything created on the context goes with it. Peers must be quiet: the context stops answering.
int closeDevice(ibv_context* c) {
  Context* ctx = contextOf(c);
  if (!ctx) return failCode(EINVAL);
  ctx->stop.store(true, std::memory_order_release);
  ctx->watcher.join();
  processWire().attach(ctx->lid, nullptr);
  if (ctx->socket) {
    processWire().setSocket(nullptr);
    ctx->socket->stop();  // before the model it answers with goes
    ctx->socket.reset();
  }
  delete ctx;
  return 0;
}

// An Ethernet port has no LID and no subnet manager; its GID table is kEthGidTableLen long.
int queryPort(ibv_context* c, uint8_t port, ibv_port_attr* attr) {
  Context* ctx = contextOf(c);
  if (!ctx || port != kPort || !attr) return failCode(EINVAL);
  *attr = ibv_port_attr{};
  attr->state = IBV_PORT_ACTIVE;
  attr->max_mtu = attr->active_mtu = IBV_MTU_4096;
  attr->gid_tbl_len = gidTableLen(*ctx);
  attr->max_msg_sz = 1u << 30;
  attr->pkey_tbl_len = 1;
  attr->lid = ctx->eth ? 0 : ctx->lid;
  attr->sm_lid = ctx->eth ? 0 : 1;
  attr->phys_state = 5;    // LinkUp
  attr->active_width = 2;  // 4x
  attr->link_layer = ctx->eth ? IBV_LINK_LAYER_ETHERNET : IBV_LINK_LAYER_INFINIBAND;
  return 0;
}

// As rdma-core's ibv_query_gid: an empty entry inside the table reads as the zero GID.
int queryGid(ibv_context* c, uint8_t port, int index, ibv_gid* gid) {
  Context* ctx = contextOf(c);
  if (!ctx || port != kPort || index < 0 || index >= gidTableLen(*ctx) || !gid) return failCode(EINVAL);
  ibv_gid_entry e{};
  if (!gidEntry(*ctx, (uint32_t)index, &e)) e.gid = ibv_gid{};
  *gid = e.gid;
  return 0;
}

// As ibv_query_gid_ex: 0, or an error number (ENODATA for an empty entry); flags must be 0.
int queryGidEx(ibv_context* c, uint32_t port, uint32_t index, ibv_gid_entry* entry, uint32_t flags) {
  Context* ctx = contextOf(c);
  if (!ctx || port != kPort || index >= (uint32_t)gidTableLen(*ctx) || !entry || flags) return failCode(EINVAL);
  return gidEntry(*ctx, index, entry) ? 0 : failCode(ENODATA);
}

// ---- PD and memory registration ---------------------------------------------------------------------------

// The model has one protection domain; a PD number only has to exist for CREATE_QP.
ibv_pd* allocPd(ibv_context* c) {
  Context* ctx = contextOf(c);
  if (!ctx) return failWith<ibv_pd>(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto pd = std::make_unique<ibv_pd>();
  pd->context = c;
  pd->handle = ctx->nextPd++;  // the model keeps the PD number here (mlx5dv_init_obj reads it)
  ibv_pd* out = pd.get();
  ctx->pds[pd->handle] = std::move(pd);
  return out;
}

int deallocPd(ibv_pd* pd) {
  Context* ctx = pd ? contextOf(pd->context) : nullptr;
  if (!ctx) return failCode(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  return ctx->pds.erase(pd->handle) ? 0 : failCode(EINVAL);
}

// Access rights the model enforces (the ibv_access_flags values of memory.h), plus relaxed ordering, which
// changes nothing in a model that executes in order.
constexpr int kModelAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;

// The keys are known to no one before this returns, so routing the region after registering it opens no
// window in which a key reaches unrouted device memory.
ibv_mr* regMr(ibv_pd* pd, void* addr, size_t length, int access) {
  Context* ctx = pd ? contextOf(pd->context) : nullptr;
  if (!ctx || (access & ~(kModelAccess | IBV_ACCESS_RELAXED_ORDERING))) return failWith<ibv_mr>(EINVAL);
  MemoryKeys keys;
  if (ctx->nic.pd().registerRegion((uint64_t)(uintptr_t)addr, length, (uint32_t)(access & kModelAccess),
                                   &keys) != Status::kOk)
    return failWith<ibv_mr>(EINVAL);
  uint64_t route = 0;
  if (!routeRegion(*ctx, (uint64_t)(uintptr_t)addr, length, &route)) {
    ctx->nic.pd().deregisterRegion(keys.lkey);
    return failWith<ibv_mr>(EINVAL);
  }
  auto mr = std::make_unique<Mr>(Mr{{pd->context, pd, addr, length, keys.lkey, keys.lkey, keys.rkey}, route});
  std::lock_guard<std::mutex> lock(ctx->mutex);
  ibv_mr* out = &mr->pub;
  ctx->mrs[keys.lkey] = std::move(mr);
  return out;
}

// The model cannot map a dma-buf; callers fall back to regMr, as on rdma-core without dma-buf support.
ibv_mr* regDmabufMr(ibv_pd*, uint64_t, size_t, uint64_t, int, int) { return failWith<ibv_mr>(EOPNOTSUPP); }

// The keys stop working before the memory stops being routed.
int deregMr(ibv_mr* mr) {
  Context* ctx = mr ? contextOf(mr->context) : nullptr;
  if (!ctx || ctx->nic.pd().deregisterRegion(mr->lkey) != Status::kOk) return failCode(EINVAL);
  std::unique_ptr<Mr> record;
  {
    std::lock_guard<std::mutex> lock(ctx->mutex);
    auto it = ctx->mrs.find(mr->lkey);
    record = std::move(it->second);
    ctx->mrs.erase(it);
  }
  unroute(*ctx, record->route);
  return 0;
}

// ---- Address handles --------------------------------------------------------------------------------------

// Ethernet: the destination GID must name a context, whose MAC (or a stale one, modelSetStaleMac) the address
// vector gets, as the kernel's neighbour resolution would give it; a GID that names none is unreachable
// (EHOSTUNREACH), and RoCE addresses are always global. IB: the LID is the destination.
ibv_ah* createAh(ibv_pd* pd, ibv_ah_attr* attr) {
  Context* ctx = pd ? contextOf(pd->context) : nullptr;
  if (!ctx || !attr || attr->port_num != kPort || (ctx->eth && !attr->is_global)) return failWith<ibv_ah>(EINVAL);
  auto ah = std::make_unique<Ah>();
  mlx5_wqe_av& av = ah->av;
  if (attr->is_global) {
    ibv_gid_entry source;
    if (!gidEntry(*ctx, attr->grh.sgid_index, &source)) return failWith<ibv_ah>(EINVAL);
    std::memcpy(av.rgid, attr->grh.dgid.raw, 16);
    av.hop_limit = attr->grh.hop_limit;
    av.tclass = attr->grh.traffic_class;
  }
  if (ctx->eth) {
    const PeerId lid = gidLid(attr->grh.dgid.raw);
    if (lid == kNoContext) return failWith<ibv_ah>(EHOSTUNREACH);
    neighbourMac((uint16_t)lid, av.rmac);
  } else {
    storeBe16(reinterpret_cast<uint8_t*>(&av.rlid), attr->dlid);
  }
  ah->pub.context = pd->context;
  ah->pub.pd = pd;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  ah->pub.handle = ctx->nextAh++;
  ibv_ah* out = &ah->pub;
  ctx->ahs[out] = std::move(ah);
  return out;
}

int destroyAh(ibv_ah* ah) {
  Context* ctx = ah ? contextOf(ah->context) : nullptr;
  if (!ctx) return failCode(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  return ctx->ahs.erase(ah) ? 0 : failCode(EINVAL);
}

// PD: its number. AH: its address vector, which lives as long as the handle.
int mlx5dvInitObj(mlx5dv_obj* obj, uint64_t type) {
  const uint64_t known = MLX5DV_OBJ_PD | MLX5DV_OBJ_AH;
  if (!obj || !type || (type & ~known)) return failCode(EOPNOTSUPP);
  if (type & MLX5DV_OBJ_PD) {
    if (!obj->pd.in || !obj->pd.out) return failCode(EINVAL);
    obj->pd.out->pdn = obj->pd.in->handle;
  }
  if (type & MLX5DV_OBJ_AH) {
    Context* ctx = obj->ah.in ? contextOf(obj->ah.in->context) : nullptr;
    if (!ctx || !obj->ah.out) return failCode(EINVAL);
    std::lock_guard<std::mutex> lock(ctx->mutex);
    auto it = ctx->ahs.find(obj->ah.in);
    if (it == ctx->ahs.end()) return failCode(EINVAL);
    obj->ah.out->av = &it->second->av;
    obj->ah.out->comp_mask = 0;
  }
  return 0;
}

// ---- DevX UMEM, UAR, EQ -----------------------------------------------------------------------------------

mlx5dv_devx_umem* umemReg(ibv_context* c, void* addr, size_t size, uint32_t) {
  Context* ctx = contextOf(c);
  if (!ctx || !addr || size == 0) return failWith<mlx5dv_devx_umem>(EINVAL);
  uint64_t route = 0;
  if (!routeRegion(*ctx, (uint64_t)(uintptr_t)addr, size, &route)) return failWith<mlx5dv_devx_umem>(EINVAL);
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto u = std::make_unique<Umem>(Umem{{ctx->nextUmem++}, ctx, (uint64_t)(uintptr_t)addr, size, route});
  mlx5dv_devx_umem* out = &u->pub;
  ctx->umems[u->pub.umem_id] = std::move(u);
  return out;
}

int umemDereg(mlx5dv_devx_umem* umem) {
  if (!umem) return failCode(EINVAL);
  Context* ctx = reinterpret_cast<Umem*>(umem)->ctx;
  std::unique_ptr<Umem> record;
  {
    std::lock_guard<std::mutex> lock(ctx->mutex);
    auto it = ctx->umems.find(umem->umem_id);
    if (it == ctx->umems.end()) return failCode(EINVAL);
    record = std::move(it->second);
    ctx->umems.erase(it);
  }
  unroute(*ctx, record->route);
  return 0;
}

// A zeroed host page stands for the UAR page; its first BlueFlame register is the doorbell the model watches.
// BF and NC allocation types give the same page.
mlx5dv_devx_uar* allocUar(ibv_context* c, uint32_t) {
  Context* ctx = contextOf(c);
  if (!ctx) return failWith<mlx5dv_devx_uar>(EINVAL);
  auto uar = std::make_unique<Uar>();
  uar->page.reset(static_cast<uint8_t*>(std::aligned_alloc(kUarPageBytes, kUarPageBytes)));
  if (!uar->page) return failWith<mlx5dv_devx_uar>(ENOMEM);
  std::memset(uar->page.get(), 0, kUarPageBytes);
  uar->ctx = ctx;
  uar->pub.base_addr = uar->page.get();
  uar->pub.reg_addr = uar->page.get() + kBlueFlameOffset;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  uar->pub.page_id = ctx->nextUar++;
  mlx5dv_devx_uar* out = &uar->pub;
  ctx->uars[out->page_id] = std::move(uar);
  return out;
}

void freeUar(mlx5dv_devx_uar* uar) {
  if (!uar) return;
  Context* ctx = reinterpret_cast<Uar*>(uar)->ctx;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  ctx->uars.erase(uar->page_id);
}

int queryEqn(ibv_context* c, uint32_t vector, uint32_t* eqn) {
  if (!contextOf(c) || vector != 0 || !eqn) return failCode(EINVAL);
  *eqn = 0;
  return 0;
}

// ---- DevX commands ----------------------------------------------------------------------------------------

CmdResult createCq(Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen, uint32_t* cqn) {
  using namespace cmd;
  if (inlen < kCreateCqInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (!getBits(in, kCqUmemValid) || !getBits(in, kCqDbrUmemValid)) return badParam(kSynUmemRequired);
  if (getBits(in, kCqCqeSz) != 0) return badParam(kSynCqeSize);
  if (getBits(in, kCqCEqn) != 0) return badParam(kSynBadEqn);
  ModelCqView v;
  v.logSize = (uint32_t)getBits(in, kCqLogSize);
  v.uarPage = (uint32_t)getBits(in, kCqUarPage);
  v.overrunIgnore = getBits(in, kCqOi);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.uars.count(v.uarPage)) return badParam(kSynBadUar);
  v.ringAddr =
      c.span((uint32_t)getBits(in, kCqUmemId), getBits(in, kCqUmemOffset), prm::kCqeBytes << v.logSize);
  v.dbrecAddr = c.span((uint32_t)getBits(in, kCqDbrUmemId), getBits(in, kCqDbrAddr), kCqDbrecBytes);
  if (!v.ringAddr || !v.dbrecAddr) return badParam(kSynBadUmem);
  CqConfig config;
  config.ringAddr = v.ringAddr;
  config.logSize = v.logSize;
  config.dbrecAddr = v.dbrecAddr;
  config.ignoreOverrun = v.overrunIgnore;
  if (c.nic.createCq(config, cqn) != Status::kOk) return badParam(kSynRejected);
  c.cqs[*cqn] = v;
  putBits(out, kOutCqn, *cqn);
  return kCmdOk;
}

CmdResult createQp(Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen, uint32_t* qpn) {
  using namespace cmd;
  if (inlen < kQpInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (!getBits(in, kQpWqUmemValid) || !getBits(in, kQpDbrUmemValid)) return badParam(kSynUmemRequired);
  if (getBits(in, kQpSt) != kStRc) return badParam(kSynQpType);
  if (getBits(in, kQpRqType) != kRqTypeZeroSize || getBits(in, kQpLogRqSize) != 0 || getBits(in, kQpNoSq))
    return badParam(kSynRqUnsupported);
  ModelQpView v;
  v.logSqBbs = (uint32_t)getBits(in, kQpLogSqSize);
  v.cqnSnd = (uint32_t)getBits(in, kQpCqnSnd);
  v.pd = (uint32_t)getBits(in, kQpPd);
  v.uarPage = (uint32_t)getBits(in, kQpUarPage);
  std::lock_guard<std::mutex> lock(c.mutex);
  if (!c.pds.count(v.pd)) return badParam(kSynBadPd);
  if (!c.uars.count(v.uarPage)) return badParam(kSynBadUar);
  if (!c.cqs.count(v.cqnSnd) || !c.cqs.count((uint32_t)getBits(in, kQpCqnRcv))) return badParam(kSynBadCqn);
  v.sqAddr = c.span((uint32_t)getBits(in, kQpWqUmemId), getBits(in, kQpWqUmemOffset),
                    (uint64_t)prm::kWqeBbBytes << v.logSqBbs);
  v.dbrecAddr = c.span((uint32_t)getBits(in, kQpDbrUmemId), getBits(in, kQpDbrAddr), kQpDbrecBytes);
  if (!v.sqAddr || !v.dbrecAddr) return badParam(kSynBadUmem);
  QpConfig config;
  config.sqAddr = v.sqAddr;
  config.logSqBbs = v.logSqBbs;
  config.dbrecAddr = v.dbrecAddr;
  config.cqn = v.cqnSnd;
  if (c.nic.createQp(config, qpn) != Status::kOk) return badParam(kSynRejected);
  c.qps[*qpn] = v;
  putBits(out, kOutQpn, *qpn);
  return kCmdOk;
}

// INIT2RTR's address path on an Ethernet port. Packets go to the MAC in rmac, and the context there takes them
// only when rgid is one of its addresses; otherwise they are lost (destLid kNoContext), which RTR cannot see.
CmdResult decodeRocePath(const Context& c, const uint8_t* in, ModelQpView* v) {
  using namespace cmd;
  v->grh = getBits(in, kQpGrh);
  v->srcAddrIndex = (uint32_t)getBits(in, kQpSrcAddrIndex);
  v->hopLimit = (uint32_t)getBits(in, kQpHopLimit);
  v->tclass = (uint32_t)getBits(in, kQpTclass);
  v->dscp = (uint32_t)getBits(in, kQpDscp);
  v->udpSport = (uint32_t)getBits(in, kQpUdpSport);
  std::memcpy(v->rgid, in + kQpRgidByte, 16);
  std::memcpy(v->rmac, in + kQpRmacByte, 6);
  if (!v->grh) return badParam(kSynGrhRequired);
  ibv_gid_entry source;
  if (!gidEntry(c, v->srcAddrIndex, &source)) return badParam(kSynBadSgidIndex);
  if (getBits(in, kQpFl)) {
    v->destLid = c.lid;
    return kCmdOk;
  }
  const PeerId named = gidLid(v->rgid);
  uint8_t mac[6];
  modelMac((uint16_t)named, mac);
  v->destLid = named != kNoContext && std::memcmp(mac, v->rmac, 6) == 0 ? (uint32_t)named : kNoContext;
  return kCmdOk;
}

// Reads what one transition sets into *v and says where the QP goes (and, for RTR, its remote).
CmdResult decodeTransition(const Context& c, uint32_t opcode, const uint8_t* in, ModelQpView* v, QpState* to,
                           RemoteQp* remote) {
  using namespace cmd;
  switch (opcode) {
    case kOpRst2Init:
      v->port = (uint32_t)getBits(in, kQpVhcaPortNum);
      if (v->port != kPort) return badParam(kSynBadPort);
      v->remoteRead = getBits(in, kQpRre);
      v->remoteWrite = getBits(in, kQpRwe);
      v->remoteAtomic = getBits(in, kQpRae);
      v->atomicMode = (uint32_t)getBits(in, kQpAtomicMode);
      *to = QpState::kInit;
      return kCmdOk;
    case kOpInit2Rtr:
      v->mtu = (uint32_t)getBits(in, kQpMtu);
      if (v->mtu < IBV_MTU_256 || v->mtu > IBV_MTU_4096) return badParam(kSynBadMtu);
      v->remoteQpn = (uint32_t)getBits(in, kQpRemoteQpn);
      if (c.eth) {
        v->rlid = (uint32_t)getBits(in, kQpRlid);
        CmdResult r = decodeRocePath(c, in, v);
        if (r.status != kStatOk) return r;
      } else {
        v->rlid = getBits(in, kQpFl) ? c.lid : (uint32_t)getBits(in, kQpRlid);
        if (v->rlid == 0) return badParam(kSynBadRlid);
        v->destLid = v->rlid;
      }
      *remote = RemoteQp{(PeerId)v->destLid, v->remoteQpn};
      *to = QpState::kRtr;
      return kCmdOk;
    case kOpRtr2Rts:
      v->nextSendPsn = (uint32_t)getBits(in, kQpNextSendPsn);
      *to = QpState::kRts;
      return kCmdOk;
    default: return {kStatBadOp, kSynUnknownOpcode};
  }
}

CmdResult modifyQp(Context& c, uint32_t qpn, const uint8_t* in, size_t inlen, size_t outlen) {
  using namespace cmd;
  if (inlen < kQpInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kOutHeaderBytes) return {kStatBadOutputLen, kSynShortOutput};
  if (getBits(in, kModifyQpn) != qpn) return badParam(kSynQpnMismatch);
  std::lock_guard<std::mutex> lock(c.mutex);
  ModelQpView v = c.qps.at(qpn);
  QpState to = QpState::kReset;
  RemoteQp remote;
  CmdResult r = decodeTransition(c, (uint32_t)getBits(in, kOpcode), in, &v, &to, &remote);
  if (r.status != kStatOk) return r;
  if (c.nic.modifyQp(qpn, to, &remote) != Status::kOk) return {kStatBadQpState, kSynQpState};
  c.qps[qpn] = v;
  return kCmdOk;
}

// Plausible ConnectX-class answers: the ring limits NicModel enforces, the port type of the link layer (RoCE
// with Ethernet), host-endian 8-byte atomics with fetch-add and masked fetch-add on 4- and 8-byte operands.
CmdResult queryHcaCap(const Context& c, const uint8_t* in, size_t inlen, uint8_t* out, size_t outlen) {
  using namespace cmd;
  if (inlen < kQueryHcaCapInBytes) return {kStatBadInputLen, kSynShortInput};
  if (outlen < kQueryHcaCapOutBytes) return {kStatBadOutputLen, kSynShortOutput};
  switch (getBits(in, kOpMod) >> 1) {
    case 0x0:
      putBits(out, kCapLogMaxQpSz, 15);
      putBits(out, kCapLogMaxQp, 17);
      putBits(out, kCapLogMaxCqSz, 22);
      putBits(out, kCapLogMaxCq, 16);
      putBits(out, kCapLogMaxRaReqQp, 4);
      putBits(out, kCapLogMaxRaResQp, 4);
      putBits(out, kCapPortType, c.eth ? 1 : 0);  // 0 IB, 1 Ethernet
      putBits(out, kCapLogMaxMsg, 30);
      putBits(out, kCapRoce, c.eth ? 1 : 0);
      putBits(out, kCapAtomic, 1);
      return kCmdOk;
    case 0x3:
      putBits(out, kAtomicEndianness, 1);  // host endianness, as memory.h assumes
      putBits(out, kAtomicOperations,
              1u << 1 | 1u << 3);                      // fetch-add, masked fetch-add
      putBits(out, kAtomicSizeQp, 1u << 2 | 1u << 3);  // 4- and 8-byte operands
      return kCmdOk;
    default: return badParam(kSynCapType);
  }
}

// A failed command leaves its status and syndrome in the output and fails with EINVAL, as mlx5 DevX does for
// firmware errors. Outputs too short for even the status fail without one.
int finish(CmdResult r, void* out, size_t outlen) {
  if (r.status == cmd::kStatOk) return 0;
  if (outlen >= cmd::kOutHeaderBytes) {
    putBits(static_cast<uint8_t*>(out), cmd::kStatus, r.status);
    putBits(static_cast<uint8_t*>(out), cmd::kSyndrome, r.syndrome);
  }
  return failCode(EINVAL);
}

bool usable(const void* in, size_t inlen, void* out, size_t outlen) {
  if (!in || !out || inlen < cmd::kOutHeaderBytes || outlen < cmd::kOutHeaderBytes) return false;
  std::memset(out, 0, outlen);
  return true;
}

mlx5dv_devx_obj* objCreate(ibv_context* c, const void* inv, size_t inlen, void* outv, size_t outlen) {
  Context* ctx = contextOf(c);
  if (!ctx || !usable(inv, inlen, outv, outlen)) return failWith<mlx5dv_devx_obj>(EINVAL);
  auto in = static_cast<const uint8_t*>(inv);
  auto out = static_cast<uint8_t*>(outv);
  uint32_t opcode = (uint32_t)getBits(in, cmd::kOpcode), number = 0;
  CmdResult r{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  if (opcode == cmd::kOpCreateCq) r = createCq(*ctx, in, inlen, out, outlen, &number);
  if (opcode == cmd::kOpCreateQp) r = createQp(*ctx, in, inlen, out, outlen, &number);
  if (finish(r, out, outlen)) return nullptr;
  auto obj = std::make_unique<Obj>(Obj{ctx, opcode == cmd::kOpCreateQp, number});
  std::lock_guard<std::mutex> lock(ctx->mutex);
  Obj* raw = obj.get();
  ctx->objs[raw] = std::move(obj);
  return reinterpret_cast<mlx5dv_devx_obj*>(raw);
}

int objModify(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen) {
  Obj* obj = reinterpret_cast<Obj*>(handle);
  if (!obj || !usable(in, inlen, out, outlen)) return failCode(EINVAL);
  CmdResult r = obj->isQp ? modifyQp(*obj->ctx, obj->number, static_cast<const uint8_t*>(in), inlen, outlen)
                          : CmdResult{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  return finish(r, out, outlen);
}

// The model answers no object queries.
int objQuery(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen) {
  if (!handle || !usable(in, inlen, out, outlen)) return failCode(EINVAL);
  return finish({cmd::kStatBadOp, cmd::kSynUnknownOpcode}, out, outlen);
}

// A destroyed QP goes back to RST (so peers' packets find no responder) and its doorbells are no longer
// watched; a CQ that a QP still uses is busy, as on a device.
int objDestroy(mlx5dv_devx_obj* handle) {
  Obj* obj = reinterpret_cast<Obj*>(handle);
  if (!obj) return failCode(EINVAL);
  Context& c = *obj->ctx;
  std::lock_guard<std::mutex> lock(c.mutex);
  if (obj->isQp) {
    c.nic.modifyQp(obj->number, QpState::kReset);
    c.qps.erase(obj->number);
  } else {
    for (auto& [qpn, view] : c.qps)
      if (view.cqnSnd == obj->number) return failCode(EBUSY);
    c.cqs.erase(obj->number);
  }
  c.objs.erase(obj);
  return 0;
}

int generalCmd(ibv_context* c, const void* inv, size_t inlen, void* outv, size_t outlen) {
  Context* ctx = contextOf(c);
  if (!ctx || !usable(inv, inlen, outv, outlen)) return failCode(EINVAL);
  auto in = static_cast<const uint8_t*>(inv);
  CmdResult r = getBits(in, cmd::kOpcode) == cmd::kOpQueryHcaCap
                    ? queryHcaCap(*ctx, in, inlen, static_cast<uint8_t*>(outv), outlen)
                    : CmdResult{cmd::kStatBadOp, cmd::kSynUnknownOpcode};
  return finish(r, outv, outlen);
}

}  // namespace

NicModel* modelNic(ibv_context* context) {
  Context* ctx = contextOf(context);
  return ctx ? &ctx->nic : nullptr;
}

uint16_t modelLid(ibv_context* context) {
  Context* ctx = contextOf(context);
  return ctx ? ctx->lid : 0;
}

std::string modelMemoryError(ibv_context* context) {
  Context* ctx = contextOf(context);
  if (!ctx) return std::string();
  std::lock_guard<std::mutex> lock(ctx->mutex);
  for (const auto& [device, gpu] : ctx->gpus)
    if (!gpu->ok()) return gpu->error();
  return std::string();
}

bool modelCqView(ibv_context* context, uint32_t cqn, ModelCqView* view) {
  Context* ctx = contextOf(context);
  if (!ctx) return false;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto it = ctx->cqs.find(cqn);
  if (it == ctx->cqs.end()) return false;
  *view = it->second;
  return true;
}

bool modelQpView(ibv_context* context, uint32_t qpn, ModelQpView* view) {
  Context* ctx = contextOf(context);
  if (!ctx) return false;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  auto it = ctx->qps.find(qpn);
  if (it == ctx->qps.end()) return false;
  *view = it->second;
  return true;
}

void modelMac(uint16_t lid, uint8_t* mac) {
  mac[0] = 0x02;  // locally administered, unicast
  mac[1] = 'l';
  mac[2] = mac[3] = 0;
  storeBe16(mac + 4, lid);
}

void modelSetStaleMac(uint16_t lid, const uint8_t* mac) {
  StaleMacs& stale = staleMacs();
  std::lock_guard<std::mutex> lock(stale.mutex);
  if (mac)
    std::memcpy(stale.byLid[lid].data(), mac, 6);
  else
    stale.byLid.erase(lid);
}

}  // namespace llnic

const llVerbs* llModelVerbs() {
  using namespace llnic;
  static const llVerbs table = [] {
    llVerbs v{};
    v.provider = "model";
    v.getDeviceList = getDeviceList;
    v.freeDeviceList = freeDeviceList;
    v.getDeviceName = getDeviceName;
    v.openDevice = openDevice;
    v.mlx5dvOpenDevice = mlx5dvOpenDevice;
    v.closeDevice = closeDevice;
    v.queryPort = queryPort;
    v.queryGid = queryGid;
    v.queryGidEx = queryGidEx;
    v.allocPd = allocPd;
    v.deallocPd = deallocPd;
    v.regMr = regMr;
    v.regDmabufMr = regDmabufMr;
    v.deregMr = deregMr;
    v.createAh = createAh;
    v.destroyAh = destroyAh;
    v.mlx5dvInitObj = mlx5dvInitObj;
    v.devxObjCreate = objCreate;
    v.devxObjDestroy = objDestroy;
    v.devxObjModify = objModify;
    v.devxObjQuery = objQuery;
    v.devxGeneralCmd = generalCmd;
    v.devxUmemReg = umemReg;
    v.devxUmemDereg = umemDereg;
    v.devxAllocUar = allocUar;
    v.devxFreeUar = freeUar;
    v.devxQueryEqn = queryEqn;
    return v;
  }();
  return &table;
}
