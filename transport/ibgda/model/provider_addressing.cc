// How the model's contexts are addressed (provider.h, "Addressing"): LIDs, the port, the GID table, MACs and
// the neighbour table behind them, and address handles.
#include "transport/ibgda/model/provider_internal.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "transport/ibgda/model/be.h"

namespace llnic {
namespace provider_detail {

uint32_t envRank() {
  const char* rank = getenv("RANK");
  return rank ? (uint32_t)strtoul(rank, nullptr, 10) : 0;
}

uint32_t lidRank(PeerId lid) { return lid > 0 ? (uint32_t)(lid - 1) / kMaxContextsPerRank : ~0u; }

uint16_t nextLid() {
  static std::atomic<uint32_t> opened{0};
  return (uint16_t)(1 + envRank() * kMaxContextsPerRank + opened++ % kMaxContextsPerRank);
}

// ---- GIDs and MACs ----------------------------------------------------------------------------------------
// IB port: one GID, fe80::/64 with an interface id of 02:'l'('l' for llep), the LID (which carries the rank) and
// the pid. Ethernet port: the table a ConnectX port shows for an interface with an IPv6 link-local and one IPv4
// address, each as a RoCE v1 and a RoCE v2 entry, then room for more:
//   0 RoCE v1 fe80::..   1 RoCE v2 fe80::..   2 RoCE v1 ::ffff:10.108.<LID>   3 RoCE v2 ::ffff:10.108.<LID>
//   4..7 empty
namespace {

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

}  // namespace

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

PeerId gidLid(const uint8_t* g) {
  static const uint8_t linkLocal[10] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 'l'};
  static const uint8_t ipv4[14] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, kIpv4Net[0], kIpv4Net[1]};
  if (std::memcmp(g, linkLocal, sizeof(linkLocal)) == 0) return (PeerId)(g[10] << 8 | g[11]);
  if (std::memcmp(g, ipv4, sizeof(ipv4)) == 0) return (PeerId)(g[14] << 8 | g[15]);
  return kNoContext;
}

namespace {

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

}  // namespace

// ---- port, GID --------------------------------------------------------------------------------------------

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

}  // namespace provider_detail

void modelMac(uint16_t lid, uint8_t* mac) {
  mac[0] = 0x02;  // locally administered, unicast
  mac[1] = 'l';
  mac[2] = mac[3] = 0;
  storeBe16(mac + 4, lid);
}

void modelSetStaleMac(uint16_t lid, const uint8_t* mac) {
  provider_detail::StaleMacs& stale = provider_detail::staleMacs();
  std::lock_guard<std::mutex> lock(stale.mutex);
  if (mac)
    std::memcpy(stale.byLid[lid].data(), mac, 6);
  else
    stale.byLid.erase(lid);
}

}  // namespace llnic
