// NCCL for tests and benchmarks, reached at run time like the library reaches it (never linked), so a
// build without NCCL's library still runs everything that does not need it. Used by the GPU test that
// initialises from an NCCL communicator and by ll_perf's NCCL baseline.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

struct llTestNccl {
  ncclResult_t (*getUniqueId)(ncclUniqueId*);
  ncclResult_t (*commInitRank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*commDestroy)(ncclComm_t);
  ncclResult_t (*groupStart)();
  ncclResult_t (*groupEnd)();
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  const char* (*getErrorString)(ncclResult_t);
};

// Loads NCCL once per process: LLEP_NCCL_LIBRARY if set (the library's own knob, so both load the same
// file), else libnccl.so.2 from the loader's path. nullptr when it cannot, with the reason in *why.
const llTestNccl* llTestNcclLoad(std::string* why);
