// The communicator: what every rank knows about itself and its peers once llCommInit* returns.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "buffer_layout.h"
#include "device/kernel_args.h"
#include "config.h"
#include "device/route.h"
#include "llep.h"

// What each rank publishes about itself at init (allgathered through the bootstrap).
struct llPeerInfo {
  uint64_t magic;
  int rank;
  int nranks;
  uint64_t hostHash;     // same value <=> same node for routing (the machine, or a simulated node: LLEP_LOCAL_RANKS)
  uint64_t machineHash;  // same value <=> same machine (which GPUs ranks really share)
  int pid;
  int cudaDev;
  char busId[32];     // PCI bus id of the GPU, to find it from other processes
  llCommConfig config;
  cudaIpcMemHandle_t ipcHandle;  // of the symmetric buffer
};

struct llComm {
  int rank = -1;
  int nranks = 0;
  int cudaDev = -1;
  llCommConfig config{};
  llBootstrap* bootstrap = nullptr;  // kept for the collective teardown
  char* buffer = nullptr;            // this rank's symmetric buffer [device]
  std::vector<llPeerInfo> peers;     // indexed by rank
  std::vector<llRoute> routes;       // host copy, indexed by rank
  llRoute* devRoutes = nullptr;      // device copy [device]
  volatile llAsyncError* asyncError = nullptr;  // kernels write their first error here [host-mapped]
  bool asyncErrorDescribed = false;   // its message was logged (once per error)
  struct llIbgdaTransport* ibgda = nullptr;  // QPs to every rank, when some route is ibgda

  // Dispatch/combine state (src/calls.cc).
  uint64_t tag = 0;                     // tells this communicator's handles and hooks from others'
  llBufferLayout layout{};
  int blocks = 0;                       // grid size of the kernels: all blocks must be co-resident
  bool sysScope = true;                 // some peer is another GPU (or host): system-scope ordering
  llDeviceState* devState = nullptr;    // [device]
  int32_t* pairRows = nullptr;          // [device] [2][N*maxTopk]: per dispatch half, own-expert rows
  int8_t* rowPairK = nullptr;           // [device] [2][E_l*R*N]: per dispatch half, k of each row's pair
  int32_t* ownCounts = nullptr;         // [device] [2][E_l]: per dispatch half, a send-only call's own counts
  uint64_t pairRowsCall[2] = {0, 0};    // the dispatch whose pairRows and rowPairK each half holds
  int nextHalf = 0;                     // half the next call uses
  uint64_t calls = 0;                   // calls made (the device's sequence number, as the host sees it)
  uint64_t zeroCopyCall = 0;            // the call the zero-copy buffer was handed out for (0: none)
  struct PendingRecv {                  // a send-only call whose receive phase has not been enqueued
    bool pending = false;
    bool isDispatch = false;
    uint64_t call = 0;
    llDispatchKernelArgs dispatch{};
    llCombineKernelArgs combine{};
  } pending[2];
};

// Builds a communicator over an established bootstrap (takes ownership of it, also on failure).
llResult_t llCommSetup(llBootstrap* bootstrap, const llCommConfig& config, llComm** out);

// Frees what the communicator owns; collective when barrier is true.
llResult_t llCommTeardown(llComm* comm, bool barrier);

// Forgets the GPU's error record (init, llCleanBuffer).
void llClearAsyncError(llComm* comm);
// Logs, once per error, what the GPU reported (an ibgda error names the peer and the CQE's syndrome).
void llDescribeAsyncError(llComm* comm);
