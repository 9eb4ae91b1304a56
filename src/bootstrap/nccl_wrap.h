// NCCL reached at run time, so llep shares the framework's copy and never links it.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "llep.h"

struct llNcclFns {
  ncclResult_t (*commCount)(const ncclComm_t, int*);
  ncclResult_t (*commUserRank)(const ncclComm_t, int*);
  ncclResult_t (*commCuDevice)(const ncclComm_t, int*);
  ncclResult_t (*allGather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  const char* (*getErrorString)(ncclResult_t);
};

// Resolves NCCL once per process: LLEP_NCCL_LIBRARY if set (and only it); else the copy already
// loaded in the process; else libnccl.so.2. Fails with llSystemError and a message when none is found.
llResult_t llNcclLoad(const llNcclFns** out);
