// The verbs and mlx5dv functions llep's ibgda host setup calls, reached through a table filled at run time:
// from libibverbs.so.1 and libmlx5.so.1 (dlopen, so the library loads where rdma-core is absent and never
// links against it), or from the software mlx5 device (transport/ibgda/model/provider.h) when
// LLEP_IB_DEVICE=model. Every entry has rdma-core's own signature, so callers read like plain verbs code.
#pragma once

#include <infiniband/mlx5dv.h>
#include <infiniband/verbs.h>

#include "llep.h"

struct llVerbs {
  const char* provider;  // "rdma-core" or "model", for messages

  ibv_device** (*getDeviceList)(int* numDevices);
  void (*freeDeviceList)(ibv_device** list);
  const char* (*getDeviceName)(ibv_device* device);
  ibv_context* (*openDevice)(ibv_device* device);
  ibv_context* (*mlx5dvOpenDevice)(ibv_device* device, mlx5dv_context_attr* attr);
  int (*closeDevice)(ibv_context* context);
  // verbs.h makes ibv_query_port a static inline; this entry behaves like it (see verbs.cc).
  int (*queryPort)(ibv_context* context, uint8_t portNum, ibv_port_attr* attr);
  int (*queryGid)(ibv_context* context, uint8_t portNum, int index, ibv_gid* gid);
  // Behaves like the static inline ibv_query_gid_ex (see verbs.cc): a GID with its type, which tells RoCE v2
  // entries from RoCE v1 ones. nullptr where rdma-core predates it (IBVERBS_1.11, rdma-core v32); returns 0
  // or an errno value (ENODATA for an empty entry).
  int (*queryGidEx)(ibv_context* context, uint32_t portNum, uint32_t index, ibv_gid_entry* entry, uint32_t flags);

  ibv_pd* (*allocPd)(ibv_context* context);
  int (*deallocPd)(ibv_pd* pd);
  ibv_mr* (*regMr)(ibv_pd* pd, void* addr, size_t length, int access);
  // nullptr where rdma-core predates dma-buf registration (IBVERBS_1.12): callers fall back to regMr.
  ibv_mr* (*regDmabufMr)(ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd, int access);
  int (*deregMr)(ibv_mr* mr);
  // RoCE: an address handle to a peer's GID makes rdma-core resolve the peer's MAC (ARP / neighbour discovery).
  ibv_ah* (*createAh)(ibv_pd* pd, ibv_ah_attr* attr);
  int (*destroyAh)(ibv_ah* ah);
  // For MLX5DV_OBJ_PD: the PD number that CREATE_QP needs; for MLX5DV_OBJ_AH: the address vector, whose rmac
  // is the MAC that a RoCE QP's address path needs.
  int (*mlx5dvInitObj)(mlx5dv_obj* obj, uint64_t objType);

  mlx5dv_devx_obj* (*devxObjCreate)(ibv_context* context, const void* in, size_t inlen, void* out,
                                    size_t outlen);
  int (*devxObjDestroy)(mlx5dv_devx_obj* obj);
  int (*devxObjModify)(mlx5dv_devx_obj* obj, const void* in, size_t inlen, void* out, size_t outlen);
  int (*devxObjQuery)(mlx5dv_devx_obj* obj, const void* in, size_t inlen, void* out, size_t outlen);
  int (*devxGeneralCmd)(ibv_context* context, const void* in, size_t inlen, void* out, size_t outlen);
  mlx5dv_devx_umem* (*devxUmemReg)(ibv_context* context, void* addr, size_t size, uint32_t access);
  int (*devxUmemDereg)(mlx5dv_devx_umem* umem);
  mlx5dv_devx_uar* (*devxAllocUar)(ibv_context* context, uint32_t flags);
  void (*devxFreeUar)(mlx5dv_devx_uar* uar);
  int (*devxQueryEqn)(ibv_context* context, uint32_t vector, uint32_t* eqn);
};

// The process's table, filled on the first call (later calls return the same table or the same error): the
// model's when LLEP_IB_DEVICE=model, rdma-core's otherwise. A missing library or symbol is llSystemError with
// a one-line message ("rdma-core not found: libibverbs.so.1: ...").
llResult_t llVerbsLoad(const llVerbs** out);

// Fills *out from the two named libraries; what llVerbsLoad does for rdma-core, exposed so tests can name a
// library that does not exist. Libraries stay loaded for the life of the process.
llResult_t llVerbsLoadLibraries(const char* verbsLib, const char* mlx5Lib, llVerbs* out);

// Opens the device called `name` (when name is null or empty: the one nearest the current GPU in the PCI
// tree, nic_choice.h) with DevX enabled. An empty device list, or a name not in it, is llSystemError with a
// message naming what was found.
llResult_t llVerbsOpenDevx(const llVerbs* v, const char* name, ibv_context** context);
