#include "transport/p2p/p2p.h"

#include "checks.h"

llResult_t llP2pExport(const llComm* comm, llPeerInfo* self) {
  CUDACHECK(cudaIpcGetMemHandle(&self->ipcHandle, comm->buffer));
  return llSuccess;
}

namespace {

// The peer's GPU as this process numbers it (peers may see different CUDA_VISIBLE_DEVICES), or -1.
int localOrdinalOf(const llPeerInfo& peer) {
  int dev = -1;
  if (cudaDeviceGetByPCIBusId(&dev, peer.busId) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return dev;
}

}  // namespace

bool llP2pCanReach(const llComm* comm, const llPeerInfo& peer) {
  const llPeerInfo& self = comm->peers[comm->rank];
  if (peer.hostHash != self.hostHash) return false;
  int dev = localOrdinalOf(peer);
  if (dev < 0) return false;
  if (dev == comm->cudaDev) return true;
  int canAccess = 0;
  if (cudaDeviceCanAccessPeer(&canAccess, comm->cudaDev, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return canAccess != 0;
}

llResult_t llP2pConnect(const llComm* comm, const llPeerInfo& peer, llRoute* route) {
  route->type = LL_ROUTE_P2P;
  route->peer = (uint32_t)peer.rank;
  route->bytes = peer.config.bufferBytes;
  if (peer.rank == comm->rank) {
    route->base = comm->buffer;
    return llSuccess;
  }
  void* mapped = nullptr;
  // Lazy peer access: enabled by the driver only if the buffer lives on another GPU.
  cudaError_t err = cudaIpcOpenMemHandle(&mapped, peer.ipcHandle, cudaIpcMemLazyEnablePeerAccess);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    LL_WARN("p2p: cannot map the buffer of rank %d (pid %d, GPU %s): %s", peer.rank, peer.pid, peer.busId,
            cudaGetErrorString(err));
    route->type = LL_ROUTE_NONE;
    return llCudaError;
  }
  route->base = static_cast<char*>(mapped);
  LL_INFO(LL_P2P, "p2p: rank %d -> rank %d mapped at %p (%llu bytes)", comm->rank, peer.rank, mapped,
          (unsigned long long)route->bytes);
  return llSuccess;
}

llResult_t llP2pDisconnect(const llComm* comm, llRoute* route) {
  if (route->type != LL_ROUTE_P2P) return llSuccess;
  char* base = route->base;
  route->type = LL_ROUTE_NONE;
  route->base = nullptr;
  if (base == nullptr || base == comm->buffer) return llSuccess;
  CUDACHECK(cudaIpcCloseMemHandle(base));
  return llSuccess;
}
