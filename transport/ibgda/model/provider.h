// The software mlx5 device behind llep's verbs table (LLEP_IB_DEVICE=model): one device, llep_model0, whose
// contexts each own a NicModel in this process. Verbs calls land in the model (port, GID, PD, memory
// registration into the model's protection domain); the DevX calls decode the raw PRM command bytes
// (CREATE_CQ, CREATE_QP, RST2INIT/INIT2RTR/RTR2RTS, QUERY_HCA_CAP) with their own field table and bit reader,
// independent of transport/ibgda/prm_cmd.h, so an encoder mistake cannot hide behind a decoder that shares
// it.
//
// Addressing: a context's LID is 1 + 16 * rank + (its open order in the process modulo 16), rank from RANK
// (as llrun sets it) or 0. LLEP_MODEL_LINK (read when a context opens) sets the port's link layer:
// - ib (default): INIT2RTR's rlid picks the peer context (force-loopback: itself).
// - eth (RoCE): the port has no LID (0), and a GID table that holds each of two addresses (IPv6 link-local,
//   IPv4 ::ffff:10.108.<LID>) as a RoCE v1 and a RoCE v2 entry; both name the context by its LID. Every context
//   has a MAC, 02:6c:00:00:<LID>, which an address handle to any of its GIDs resolves. INIT2RTR must carry grh
//   (a check of llep's encoder, not a device rule: the kernel leaves the bit clear on its own RoCE QPs) and a
//   set src_addr_index; the QP reaches the context that rgid names only when rmac is that context's MAC.
//   Otherwise RTR still succeeds, as on a NIC (firmware does not check that a path leads anywhere), and every
//   packet is lost: the first WQE completes with the transport-retries-exceeded syndrome.
// Contexts of this process reach each other directly. With LLEP_MODEL_JOB set (a directory, or a job name for
// SocketWire::jobDir), the first context a process opens (while none holds it) also listens on a SocketWire
// as rank RANK: a LID of another rank (rank = (LID - 1) / 16) is reached through that rank's socket-wired
// context; closing the context stops the wire and removes its socket file.
//
// Doorbells: a UAR is a host page; a watcher thread per context sees its BlueFlame register (reg_addr, 8
// bytes) change and then executes, for every QP of that UAR page, the WQEs its doorbell record announces.
// A GPU rings it through a cudaHostRegister mapping of that page.
//
// Memory: a UMEM or MR over CUDA device memory (rings, doorbell records, CQEs, buffers; cudaDeviceOf) is
// reached through the context's CudaMemory of that GPU, by copies; everything else is host memory, reached
// through pointers. Requester and responder (the wire's incoming operations) go the same way.
#pragma once

#include <cstdint>
#include <string>

#include "transport/ibgda/model/nic_model.h"
#include "transport/ibgda/verbs.h"

// The model's verbs table (what llVerbsLoad returns for LLEP_IB_DEVICE=model).
const llVerbs* llModelVerbs();

namespace llnic {

// What the model decoded from a CREATE_CQ, for tests and diagnostics.
struct ModelCqView {
  uint64_t ringAddr = 0;  // cq umem address + cq_umem_offset
  uint32_t logSize = 0;
  uint64_t dbrecAddr = 0;  // dbr umem address + dbr_addr
  uint32_t uarPage = 0;
  bool overrunIgnore = false;
};

// What the model decoded from a CREATE_QP and the transitions since.
struct ModelQpView {
  uint64_t sqAddr = 0;  // wq umem address + wq_umem_offset (zero-size RQ: the SQ starts the buffer)
  uint32_t logSqBbs = 0;
  uint64_t dbrecAddr = 0;
  uint32_t cqnSnd = 0;
  uint32_t pd = 0;
  uint32_t uarPage = 0;
  // RST2INIT
  uint32_t port = 0;
  bool remoteRead = false, remoteWrite = false, remoteAtomic = false;
  uint32_t atomicMode = 0;
  // INIT2RTR
  uint32_t mtu = 0;
  uint32_t remoteQpn = 0;
  uint32_t rlid = 0;  // IB: the peer's LID (this context's own LID under force-loopback); Ethernet: as sent
  // Ethernet (RoCE) address path, as sent
  bool grh = false;
  uint32_t srcAddrIndex = 0, hopLimit = 0, tclass = 0, dscp = 0, udpSport = 0;
  uint8_t rgid[16] = {};
  uint8_t rmac[6] = {};
  uint32_t destLid = 0;  // the context the QP's packets reach; 0 when none does
  // RTR2RTS
  uint32_t nextSendPsn = 0;
};

// The model behind a context opened from the model's table; nullptr for any other context.
NicModel* modelNic(ibv_context* context);
uint16_t modelLid(ibv_context* context);
// The first failed access of the context's device to GPU memory (CudaMemory::error), "" while none. A
// failed access reads zeros or writes nothing, and the device cannot report it in a CQE.
std::string modelMemoryError(ibv_context* context);
// False when the context has no such object.
bool modelCqView(ibv_context* context, uint32_t cqn, ModelCqView* view);
bool modelQpView(ibv_context* context, uint32_t qpn, ModelQpView* view);
// The MAC of context `lid` on an Ethernet port.
void modelMac(uint16_t lid, uint8_t* mac);
// Test hook, a stale neighbour entry: in this process, address handles to any GID of context `lid` resolve to
// `mac` (6 bytes) instead of its MAC; nullptr restores the right one.
void modelSetStaleMac(uint16_t lid, const uint8_t* mac);

}  // namespace llnic
