// How a rank's QPs address their peers, from the port's link layer. InfiniBand: LIDs (GID 0 is exchanged,
// unused). Ethernet (RoCE): a GID chosen from the port's table (or LLEP_IB_GID_INDEX), and in each QP's
// address path the peer's GID and MAC (resolved through an address handle), hop limit, traffic class
// (LLEP_IB_TC), and for RoCE v2 the UDP source port and DSCP.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "transport/ibgda/prm_cmd.h"
#include "transport/ibgda/verbs.h"

// How this rank's QPs address their peers, from the port's link layer.
struct llIbgdaAddressing {
  bool roce = false;
  int gidIndex = 0;
  uint32_t gidType = IBV_GID_TYPE_IB;
  ibv_gid gid{};
  uint32_t tclass = 0;  // RoCE: LLEP_IB_TC
};

// This rank's address on port `portNum`, from its link layer.
llResult_t llIbgdaLocalAddress(const llVerbs* v, ibv_context* c, uint8_t portNum, const ibv_port_attr& port,
                               llIbgdaAddressing* a);

// Fills the RoCE part of INIT2RTR's address path towards peer p (GID peerGid).
llResult_t llIbgdaRocePath(const llVerbs* v, ibv_pd* pd, int p, const uint8_t* peerGid, const llIbgdaAddressing& a,
                           uint8_t portNum, LlPrmInit2rtrParams* b);

// The GID table entry a RoCE port is used through when LLEP_IB_GID_INDEX does not name one, as NCCL and
// NVSHMEM choose: RoCE v2 with an IPv4-mapped address (::ffff:a.b.c.d) first, then RoCE v2 with a global
// IPv6 address; the first such entry in the given order. RoCE v1 (not routable), link-local (one link
// only) and zero (unset) entries never qualify. Returns the chosen entry's gid_index, or -1 when none.
int llIbgdaChooseGid(const ibv_gid_entry* entries, size_t count);

int llIbgdaChooseGid(const ibv_gid_entry* entries, size_t count);

// "::ffff:10.0.0.1", "fe80::..." for messages.
std::string llIbgdaGidText(const uint8_t* raw);
