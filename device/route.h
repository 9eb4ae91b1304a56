// How a kernel reaches one peer's symmetric buffer. Filled by the host transports at setup, copied to
// device memory as one array indexed by rank; kernels pick the route per destination and never learn
// how it was set up. Plain C layout: included by host (.cc) and device (.cu) code alike.
#pragma once

#include <stdint.h>

enum llRouteType : uint32_t {
  LL_ROUTE_NONE = 0,   // unreachable (never present in a working communicator)
  LL_ROUTE_P2P = 1,    // peer's buffer is mapped into this process: plain loads and stores
  LL_ROUTE_IBGDA = 2,  // GPU-initiated RDMA (transport/ibgda)
};

struct LlIbgdaQp;  // transport/ibgda/ibgda_qp.h

struct llRoute {
  uint32_t type;   // llRouteType
  uint32_t peer;   // the peer's rank
  char* base;      // P2P: the peer's buffer as mapped here (this rank's own buffer for itself)
  uint64_t bytes;  // size of the peer's buffer
  // IBGDA: the RC QP connected to the peer (GPU memory), and the peer's buffer as its NIC knows it.
  struct LlIbgdaQp* qp;
  uint64_t remoteBase;
  uint32_t rkey;
  uint32_t lkey;   // this rank's buffer, for the local side of the peer's WQEs
};
