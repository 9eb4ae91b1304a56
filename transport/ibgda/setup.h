// ibgda host setup: connects the R ranks of a bootstrap with RC QPs through the verbs table (verbs.h), so
// that each rank can post RDMA writes and atomics to every rank with ibgda_qp.h.
//
// Per rank: one device context (the one nearest the current GPU, or LLEP_IB_HCA), one PD, one MR over the
// caller's buffer (local write, remote write/read/atomic; through a dma-buf where possible), one UMEM holding every ring and doorbell record, one UAR, and for
// every rank p (self included: a loopback QP, so device code needs no special case) one send CQ and one RC
// QP created with DevX from prm_cmd.h's encoders. The ranks exchange {lid, gid, rkey, base, qpn per peer}
// with allGather, then move each QP RST->INIT->RTR->RTS. Every command's status is checked; a failure is
// llSystemError with a one-line message naming the command, the peer, status and syndrome.
//
// Addressing follows the port's link layer (roce.h). InfiniBand: the peer's LID (GID 0 is exchanged, unused).
// Ethernet (RoCE): the GID at LLEP_IB_GID_INDEX, or the best entry of the GID table (llIbgdaChooseGid); the
// address path carries the peer's GID, our GID index, LLEP_IB_TC, and the peer's MAC, which an address handle
// to the peer's GID resolves.
//
// Rings live where the allocator puts them (host memory by default; GPU memory for kernels): setup builds
// their first image in host memory and hands it to the allocator's upload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "transport/ibgda/ibgda_qp.h"
#include "transport/ibgda/verbs.h"

// Where the SQ rings, CQ rings and doorbell records live. All three functions are required.
struct llIbgdaRingAllocator {
  // bytes of memory aligned to `align` (a power of two, at least 4096) that the NIC can reach; nullptr on failure.
  void* (*alloc)(size_t bytes, size_t align, void* user);
  void (*free)(void* p, void* user);
  // Copies host bytes into that memory (the rings' first image: zeroed records, invalid CQEs).
  llResult_t (*upload)(void* dst, const void* src, size_t bytes, void* user);
  void* user;
};

// Host memory: aligned_alloc, free, memcpy.
const llIbgdaRingAllocator* llIbgdaHostRings();

struct llIbgdaSetupOptions {
  const char* hca = nullptr;   // device name; nullptr: LLEP_IB_HCA, else the one nearest the GPU
  uint8_t port = 1;
  uint32_t logSqBbs = 6;       // 2..15 (ibgda_qp.h)
  uint32_t logCqSize = 6;      // >= logSqBbs
  const llIbgdaRingAllocator* rings = nullptr;  // nullptr: llIbgdaHostRings()
  uint64_t spinTimeoutNs = 0;  // LlIbgdaQp::spinTimeoutNs of every QP (0: waits are unbounded)
};

// What one rank learns about another.
struct llIbgdaPeer {
  uint16_t lid = 0;
  uint8_t gid[16] = {};
  uint32_t qpn = 0;   // the peer's QP connected to ours
  uint32_t rkey = 0;  // the peer's buffer
  uint64_t base = 0;  // the peer's buffer address
};

struct llIbgdaEndpoints {
  int rank = -1, nranks = 0;
  const llVerbs* v = nullptr;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  uint32_t pdn = 0;
  ibv_mr* mr = nullptr;  // lkey for local segments: mr->lkey
  llIbgdaRingAllocator rings{};
  uint8_t* ringMem = nullptr;  // every ring and record, through the allocator
  size_t ringBytes = 0;
  mlx5dv_devx_umem* umem = nullptr;
  mlx5dv_devx_uar* uar = nullptr;
  uint16_t lid = 0;
  bool roce = false;  // an Ethernet port: peers are addressed by GID and MAC
  int gidIndex = 0;   // the GID table entry this rank is known by (InfiniBand: 0)
  std::vector<mlx5dv_devx_obj*> cqObjs, qpObjs;  // by peer rank
  std::vector<uint32_t> cqn;
  std::vector<LlIbgdaQp> qp;        // by peer rank: ready for ibgda_qp.h's posts (host copy)
  std::vector<llIbgdaPeer> peers;   // by peer rank
};

// Collective over bs: every rank calls it with its own buffer. It ends with a barrier, so on return every
// rank's QPs are in RTS and may be posted to. On failure everything created is released
// and *out is left empty (safe to pass to llIbgdaDisconnect).
llResult_t llIbgdaConnect(const llVerbs* v, llBootstrap* bs, void* buffer, size_t bytes,
                          const llIbgdaSetupOptions* options, llIbgdaEndpoints* out);

// Releases in reverse order: QPs, CQs, UAR, UMEM and ring memory, MR, PD, device. Peers must be quiet
// (a barrier after the last quiet). Idempotent; the first failure is returned, the rest is still released.
llResult_t llIbgdaDisconnect(llIbgdaEndpoints* ep);

// Waits for every WQE posted to `peer` (llIbgdaQuiet); an error CQE is llRemoteError with a message naming
// the peer, the QPs, the syndrome and the failed WQE.
llResult_t llIbgdaQuietPeer(llIbgdaEndpoints* ep, int peer);

// A short name of an error CQE syndrome ("remote access error", ...).
const char* llIbgdaSyndromeName(uint32_t syndrome);
