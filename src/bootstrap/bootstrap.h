// Setup-time exchange between the ranks of one communicator: allgather, broadcast, barrier.
// Two implementations: a TCP rendezvous (unique id or MASTER_ADDR/PORT) and an existing ncclComm_t.
// Used only while a communicator is created or destroyed, never on the data path.
#pragma once

#include <cstddef>

#include "llep.h"

struct llBootstrap {
  int rank = 0;
  int nranks = 0;
  virtual ~llBootstrap() = default;
  // buf holds nranks slots of bytesPerRank; this rank's slot (buf + rank*bytesPerRank) is sent, all
  // others are filled. bytesPerRank may be 0.
  virtual llResult_t allGather(void* buf, size_t bytesPerRank) = 0;
  // root's bytes are copied to every rank's buf.
  virtual llResult_t broadcast(void* buf, size_t bytes, int root) = 0;
  virtual llResult_t barrier() = 0;
};

// TCP rendezvous described by a unique id (see unique_id.h). Waits at most timeoutMs for all ranks;
// a rank that never arrives gives llTimeout, an id from another run llInvalidUsage.
llResult_t llBootstrapTcpCreate(const llUniqueId& id, int rank, int nranks, int timeoutMs,
                                llBootstrap** out);

// Exchange through an ncclComm_t, whose NCCL functions are resolved at run time (nccl_wrap.h).
llResult_t llBootstrapNcclCreate(ncclComm_t comm, llBootstrap** out);
