// p2p transport: peers whose memory this GPU can address (the same GPU in another process, NVLink or
// PCIe peers on this host). Each peer's symmetric buffer is mapped here with CUDA IPC, and kernels
// reach it with plain loads and stores.
#pragma once

#include "comm.h"

// Publishes this rank's buffer: fills self->ipcHandle.
llResult_t llP2pExport(const llComm* comm, llPeerInfo* self);

// Whether this rank's GPU can address `peer`'s buffer (same host, and same GPU or peer access).
bool llP2pCanReach(const llComm* comm, const llPeerInfo& peer);

// Maps the peer's buffer and fills its route. For this rank itself the route is its own buffer.
llResult_t llP2pConnect(const llComm* comm, const llPeerInfo& peer, llRoute* route);

// Unmaps what llP2pConnect mapped.
llResult_t llP2pDisconnect(const llComm* comm, llRoute* route);
