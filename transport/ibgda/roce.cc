#include "transport/ibgda/roce.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "checks.h"
#include "param.h"

namespace {

// RoCE packets carry a hop limit like any IP packet; 64 crosses any data-centre fabric.
constexpr uint32_t kRoceHopLimit = 64;

bool zeroGid(const ibv_gid& g) {
  for (uint8_t b : g.raw)
    if (b) return false;
  return true;
}

// ::ffff:a.b.c.d, an IPv4 address in IPv6 form (RFC 4291 2.5.5.2): how RoCE v2 GIDs hold IPv4 addresses.
bool ipv4MappedGid(const ibv_gid& g) {
  for (int i = 0; i < 10; i++)
    if (g.raw[i]) return false;
  return g.raw[10] == 0xff && g.raw[11] == 0xff;
}

// fe80::/10: valid on one link only, so no router forwards packets to it.
bool linkLocalGid(const ibv_gid& g) { return g.raw[0] == 0xfe && (g.raw[1] & 0xc0) == 0x80; }

// 0: RoCE v2 with an IPv4 address; 1: RoCE v2 with a global IPv6 address; -1: not a candidate.
int gidPreference(const ibv_gid_entry& e) {
  if (e.gid_type != IBV_GID_TYPE_ROCE_V2 || zeroGid(e.gid)) return -1;
  if (ipv4MappedGid(e.gid)) return 0;
  return linkLocalGid(e.gid) ? -1 : 1;
}

// "::ffff:10.0.0.1", "fe80::..." for messages.
}  // namespace

std::string llIbgdaGidText(const uint8_t* raw) {
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, raw, text, sizeof(text));
  return text;
}

namespace {

const char* gidTypeName(uint32_t type) {
  switch (type) {
    case IBV_GID_TYPE_IB: return "IB";
    case IBV_GID_TYPE_ROCE_V1: return "RoCE v1";
    case IBV_GID_TYPE_ROCE_V2: return "RoCE v2";
    default: return "unknown type";
  }
}

// The set entries of the port's GID table, in index order. Tables have room for more addresses than their
// interfaces hold; entries that do not read back (rdma-core: ENODATA for an empty one) or read as zero are
// not candidates.
std::vector<ibv_gid_entry> setGids(const llVerbs* v, ibv_context* c, uint8_t portNum, int tableLen) {
  std::vector<ibv_gid_entry> set;
  for (int i = 0; i < tableLen; i++) {
    ibv_gid_entry e{};
    if (v->queryGidEx(c, portNum, (uint32_t)i, &e, 0) == 0 && !zeroGid(e.gid)) set.push_back(e);
  }
  return set;
}

// The GID of a RoCE port that this rank is known by: LLEP_IB_GID_INDEX when set, else llIbgdaChooseGid's.
// Only ibv_query_gid_ex tells RoCE v2 entries from RoCE v1 ones, which share addresses.
llResult_t roceGid(const llVerbs* v, ibv_context* c, uint8_t portNum, int tableLen, llIbgdaAddressing* a) {
  const char* dev = v->getDeviceName(c->device);
  LL_REQUIRE(v->queryGidEx, llSystemError,
             "ibgda: port %u of %s is Ethernet (RoCE), and %s has no ibv_query_gid_ex (rdma-core v32 or newer) to "
             "read GID types", portNum, dev, v->provider);
  const int64_t want = llParamIbGidIndex();
  ibv_gid_entry e{};
  if (want != -1) {
    LL_REQUIRE(want >= 0 && want < tableLen, llInvalidArgument,
               "ibgda: LLEP_IB_GID_INDEX=%lld is outside the GID table of %s port %u (%d entries)", (long long)want,
               dev, portNum, tableLen);
    int err = v->queryGidEx(c, portNum, (uint32_t)want, &e, 0);
    LL_REQUIRE(err == 0 && !zeroGid(e.gid), llInvalidArgument,
               "ibgda: LLEP_IB_GID_INDEX=%lld names an empty entry of the GID table of %s port %u (%s)",
               (long long)want, dev, portNum, err ? strerror(err) : "zero GID");
    a->gidIndex = (int)want;
  } else {
    std::vector<ibv_gid_entry> set = setGids(v, c, portNum, tableLen);
    a->gidIndex = llIbgdaChooseGid(set.data(), set.size());
    LL_REQUIRE(a->gidIndex >= 0, llSystemError,
               "ibgda: none of the %zu set entries of the GID table of %s port %u is RoCE v2 with an IPv4 or global "
               "IPv6 address; LLEP_IB_GID_INDEX can name one", set.size(), dev, portNum);
    for (const ibv_gid_entry& x : set)
      if ((int)x.gid_index == a->gidIndex) e = x;
  }
  a->gidType = e.gid_type;
  a->gid = e.gid;
  LL_INFO(LL_INIT, "ibgda: %s port %u: GID index %d (%s, %s)%s", dev, portNum, a->gidIndex, gidTypeName(e.gid_type),
          llIbgdaGidText(e.gid.raw).c_str(), want != -1 ? " from LLEP_IB_GID_INDEX" : "");
  return llSuccess;
}

// InfiniBand: GID 0, exchanged but unused (LIDs address peers). Ethernet: the RoCE GID and LLEP_IB_TC.
}  // namespace

llResult_t llIbgdaLocalAddress(const llVerbs* v, ibv_context* c, uint8_t portNum, const ibv_port_attr& port,
                        llIbgdaAddressing* a) {
  if (port.link_layer == IBV_LINK_LAYER_INFINIBAND) {
    if (v->queryGid(c, portNum, 0, &a->gid) != 0) {
      LL_WARN("ibgda: query of GID 0 on port %u failed: %s", portNum, strerror(errno));
      return llSystemError;
    }
    return llSuccess;
  }
  LL_REQUIRE(port.link_layer == IBV_LINK_LAYER_ETHERNET, llSystemError,
             "ibgda: port %u of %s has link layer %u, neither InfiniBand nor Ethernet", portNum,
             v->getDeviceName(c->device), port.link_layer);
  const int64_t tc = llParamIbTc();
  LL_REQUIRE(tc >= 0 && tc <= 255, llInvalidArgument, "ibgda: LLEP_IB_TC=%lld is not a traffic class (0..255)",
             (long long)tc);
  a->roce = true;
  a->tclass = (uint32_t)tc;
  return roceGid(v, c, portNum, port.gid_tbl_len, a);
}

// A RoCE frame goes to the peer's MAC, which the QP context cannot look up by itself. An address handle to
// the peer's GID makes rdma-core and the kernel resolve it (neighbour table, ARP or ND), and mlx5dv_init_obj
// exposes the handle's address vector. The handle is only a means: it goes at once.
namespace {

llResult_t peerMac(const llVerbs* v, ibv_pd* pd, uint8_t portNum, const llIbgdaAddressing& a, int peer,
                   const uint8_t* peerGid, uint8_t* mac) {
  ibv_ah_attr attr{};
  attr.is_global = 1;
  attr.port_num = portNum;
  std::memcpy(attr.grh.dgid.raw, peerGid, 16);
  attr.grh.sgid_index = (uint8_t)a.gidIndex;
  attr.grh.hop_limit = kRoceHopLimit;
  attr.grh.traffic_class = (uint8_t)a.tclass;
  errno = 0;
  ibv_ah* ah = v->createAh(pd, &attr);
  if (!ah) {
    LL_WARN("ibgda: ibv_create_ah towards peer %d (GID %s) failed: %s", peer, llIbgdaGidText(peerGid).c_str(),
            strerror(errno));
    return llSystemError;
  }
  mlx5dv_ah dvAh{};
  mlx5dv_obj obj{};
  obj.ah.in = ah;
  obj.ah.out = &dvAh;
  const int initRc = v->mlx5dvInitObj(&obj, MLX5DV_OBJ_AH);
  const int initErr = errno;
  if (initRc == 0) std::memcpy(mac, dvAh.av->rmac, 6);
  if (v->destroyAh(ah) != 0) {
    LL_WARN("ibgda: ibv_destroy_ah towards peer %d failed: %s", peer, strerror(errno));
    return llSystemError;
  }
  if (initRc != 0) {
    LL_WARN("ibgda: mlx5dv_init_obj(AH) towards peer %d failed: %s", peer, strerror(initErr));
    return llSystemError;
  }
  return llSuccess;
}

// RoCE v2 switches spread flows over equal-cost paths by the UDP source port, so each connection gets its own,
// mixed from both QPNs, in the dynamic range 0xC000-0xFFFF where the kernel puts the ports it derives from
// flow labels.
uint32_t udpSourcePort(uint32_t qpn, uint32_t remoteQpn) {
  uint32_t x = qpn * 0x9e3779b1u ^ remoteQpn;
  return 0xc000 | ((x ^ x >> 16) & 0x3fff);
}

// The RoCE part of INIT2RTR's address path, the fields the kernel's mlx5 driver fills for a RoCE QP: the peer's
// GID and MAC, our GID index, hop limit and traffic class; for RoCE v2 (UDP/IP) also the UDP source port and
// the DSCP (the traffic class's top six bits). grh is set: every RoCE packet carries a GRH (v1) or an IP header
// (v2). The kernel leaves the bit clear on Ethernet ports, so firmware implies it there; setting it says the
// same thing.
}  // namespace

llResult_t llIbgdaRocePath(const llVerbs* v, ibv_pd* pd, int p, const uint8_t* peerGid, const llIbgdaAddressing& a,
                           uint8_t portNum, LlPrmInit2rtrParams* b) {
  LlPrmAddressPath& path = b->path;
  path.grh = true;
  std::memcpy(path.rgid, peerGid, 16);
  path.srcAddrIndex = (uint32_t)a.gidIndex;
  path.hopLimit = kRoceHopLimit;
  path.tclass = a.tclass;
  if (a.gidType == IBV_GID_TYPE_ROCE_V2) {
    path.udpSport = udpSourcePort(b->qpn, b->remoteQpn);
    path.dscp = a.tclass >> 2;
  }
  return peerMac(v, pd, portNum, a, p, peerGid, path.rmac);
}

int llIbgdaChooseGid(const ibv_gid_entry* entries, size_t count) {
  int best = -1, bestPreference = 2;
  for (size_t i = 0; i < count; i++) {
    const int preference = gidPreference(entries[i]);
    if (preference >= 0 && preference < bestPreference) {
      best = (int)entries[i].gid_index;
      bestPreference = preference;
    }
  }
  return best;
}
