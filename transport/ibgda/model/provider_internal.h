// The model's records and what the files of its verbs table (provider.h) share; private to them:
//   provider.cc             device list, contexts and their doorbell watcher, the table itself
//   provider_wire.cc        the process-wide wire: contexts of this process, a SocketWire to other ranks
//   provider_addressing.cc  LIDs, port, GID table, MACs, address handles
//   provider_memory.cc      PD, memory registration and its routing to GPU memory, DevX UMEM, UAR, EQ
//   provider_devx.cc        DevX commands (CREATE_CQ, CREATE_QP, QP transitions, QUERY_HCA_CAP) and their decoding
//
// Objects handed to callers are rdma-core's own structures (ibv_device, ibv_context, ibv_pd, ibv_mr,
// mlx5dv_devx_umem, mlx5dv_devx_uar) embedded first in the model's records, so a pointer the caller holds leads
// back to the record; mlx5dv_devx_obj is opaque and stands for an Obj.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/ibgda/model/cuda_memory.h"
#include "transport/ibgda/model/provider.h"
#include "transport/ibgda/model/socket_wire.h"
#include "transport/ibgda/model/wire.h"

namespace llnic {
namespace provider_detail {

constexpr uint8_t kPort = 1;
constexpr uint32_t kMaxContextsPerRank = 16;
constexpr PeerId kNoContext = 0;  // no context has LID 0: an Ethernet path whose MAC and GID lead nowhere

// ---- the process-wide wire (provider_wire.cc) --------------------------------------------------------------

// The wire every context of this process sends through. A LID attached here (a context of this process)
// is a direct call into its model; any other LID goes, when a SocketWire is attached (LLEP_MODEL_JOB),
// to the process of the rank that owns it, whose socket-wired context answers. Nothing answers a LID of
// this rank that no open context holds.
class ProcessWire final : public Wire {
 public:
  void attach(PeerId lid, Responder* responder);
  void setSocket(std::shared_ptr<SocketWire> socket);
  bool hasSocket();

  WireStatus write(PeerId lid, const WriteMsg& msg) override;
  AtomicReply atomic(PeerId lid, const AtomicMsg& msg) override;

 private:
  std::shared_ptr<SocketWire> route(PeerId lid, Responder** local);

  std::mutex mutex_;
  std::map<PeerId, Responder*> local_;
  std::shared_ptr<SocketWire> socket_;
};

ProcessWire& processWire();

// LLEP_MODEL_JOB: a directory (absolute path) or a job name (SocketWire::jobDir); empty when unset.
std::string modelJobDir();

// ---- the model's records ----------------------------------------------------------------------------------

// The memory behind every host region of every context (provider_memory.cc).
HostMemory& hostMemory();

// The model's one device (provider.cc).
ibv_device* modelDevice();

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

  // The doorbell watcher, the thread `watcher` runs until `stop` (provider.cc).
  std::vector<uint32_t> rungQps();
  void watch();

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

// The record behind a context of the model's device; nullptr for any other context (provider.cc).
Context* contextOf(ibv_context* c);

// Verbs report failure as nullptr or an error number, with errno set.
template <typename T>
T* failWith(int err) {
  errno = err;
  return nullptr;
}
inline int failCode(int err) {
  errno = err;
  return err;
}

// ---- addressing (provider_addressing.cc) --------------------------------------------------------------------

uint32_t envRank();
// Which rank owns a LID (see nextLid).
uint32_t lidRank(PeerId lid);
uint16_t nextLid();
// Entry `index` of the context's GID table; false for an empty one.
bool gidEntry(const Context& c, uint32_t index, ibv_gid_entry* e);
// The LID of the context a GID of the model names (either address form), or kNoContext.
PeerId gidLid(const uint8_t* g);

// ---- verbs entry points, by file --------------------------------------------------------------------------

// provider_addressing.cc
int queryPort(ibv_context* c, uint8_t port, ibv_port_attr* attr);
int queryGid(ibv_context* c, uint8_t port, int index, ibv_gid* gid);
int queryGidEx(ibv_context* c, uint32_t port, uint32_t index, ibv_gid_entry* entry, uint32_t flags);
ibv_ah* createAh(ibv_pd* pd, ibv_ah_attr* attr);
int destroyAh(ibv_ah* ah);
int mlx5dvInitObj(mlx5dv_obj* obj, uint64_t type);

// provider_memory.cc
ibv_pd* allocPd(ibv_context* c);
int deallocPd(ibv_pd* pd);
ibv_mr* regMr(ibv_pd* pd, void* addr, size_t length, int access);
ibv_mr* regDmabufMr(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access);
int deregMr(ibv_mr* mr);
mlx5dv_devx_umem* umemReg(ibv_context* c, void* addr, size_t size, uint32_t access);
int umemDereg(mlx5dv_devx_umem* umem);
mlx5dv_devx_uar* allocUar(ibv_context* c, uint32_t flags);
void freeUar(mlx5dv_devx_uar* uar);
int queryEqn(ibv_context* c, uint32_t vector, uint32_t* eqn);

// provider_devx.cc
mlx5dv_devx_obj* objCreate(ibv_context* c, const void* in, size_t inlen, void* out, size_t outlen);
int objModify(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen);
int objQuery(mlx5dv_devx_obj* handle, const void* in, size_t inlen, void* out, size_t outlen);
int objDestroy(mlx5dv_devx_obj* handle);
int generalCmd(ibv_context* c, const void* in, size_t inlen, void* out, size_t outlen);

}  // namespace provider_detail
}  // namespace llnic
