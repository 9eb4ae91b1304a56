// The communicator entry points of the C API: argument checks, then bootstrap, then llCommSetup.
#include <cuda_runtime_api.h>

#include <mutex>

#include "api.h"
#include "bootstrap/bootstrap.h"
#include "bootstrap/nccl_wrap.h"
#include "bootstrap/unique_id.h"
#include "checks.h"
#include "comm.h"
#include "config.h"
#include "param.h"

namespace {

void announceOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    llDebugLog(LL_LOG_VERSION, LL_INIT, __FILE__, __LINE__, "llep version %d.%d.%d", LLEP_MAJOR, LLEP_MINOR,
               LLEP_PATCH);
    llParamDumpAll();
  });
}

// A clear message where there is no GPU or no driver, instead of a failure deep inside setup.
llResult_t requireCudaDevice() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    LL_WARN("no usable CUDA device: cudaGetDeviceCount failed: %s", cudaGetErrorString(err));
    return llCudaError;
  }
  LL_REQUIRE(count > 0, llCudaError, "no usable CUDA device: cudaGetDeviceCount found none");
  return llSuccess;
}

llResult_t commFromBootstrap(llBootstrap* bs, const llConfig_t* config, llComm_t* comm) {
  llCommConfig c;
  llResult_t res = llConfigResolve(config, bs->nranks, &c);
  if (res != llSuccess) {
    delete bs;
    return res;
  }
  return llCommSetup(bs, c, comm);
}

}  // namespace

LL_API llResult_t llCommInitRank(llComm_t* comm, int nranks, llUniqueId commId, int rank,
                                 const llConfig_t* config) {
  announceOnce();
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommInitRank: comm is NULL");
  *comm = nullptr;
  LL_REQUIRE(nranks > 0, llInvalidArgument, "llCommInitRank: nranks = %d must be > 0", nranks);
  LL_REQUIRE(rank >= 0 && rank < nranks, llInvalidArgument, "llCommInitRank: rank = %d is outside 0..%d", rank,
             nranks - 1);
  llCommConfig c;
  LLCHECK(llConfigResolve(config, nranks, &c));
  LLCHECK(requireCudaDevice());
  llBootstrap* bs = nullptr;
  LLCHECK(llBootstrapTcpCreate(commId, rank, nranks, c.timeoutMs, &bs));
  LLCHECK(llCommSetup(bs, c, comm));
  return llSuccess;
}

LL_API llResult_t llCommInitFromEnv(llComm_t* comm, const llConfig_t* config) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommInitFromEnv: comm is NULL");
  *comm = nullptr;
  llUniqueId id;
  int rank = -1, nranks = 0;
  LLCHECK(llUniqueIdFromEnv(&id, &rank, &nranks));
  return llCommInitRank(comm, nranks, id, rank, config);
}

LL_API llResult_t llCommInitFromNccl(llComm_t* comm, ncclComm_t nccl, const llConfig_t* config) {
  announceOnce();
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommInitFromNccl: comm is NULL");
  *comm = nullptr;
  LL_REQUIRE(nccl != nullptr, llInvalidArgument, "llCommInitFromNccl: the NCCL communicator is NULL");
  // The shape is checked before NCCL is touched; the experts-per-rank rule once the rank count is known.
  llCommConfig check;
  LLCHECK(llConfigResolve(config, 1, &check));
  const llNcclFns* ncclFns = nullptr;
  LLCHECK(llNcclLoad(&ncclFns));
  LLCHECK(requireCudaDevice());
  llBootstrap* bs = nullptr;
  LLCHECK(llBootstrapNcclCreate(nccl, &bs));
  return commFromBootstrap(bs, config, comm);
}

LL_API llResult_t llCommDestroy(llComm_t comm) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommDestroy: comm is NULL");
  return llCommTeardown(comm, /*barrier=*/true);
}

LL_API llResult_t llCommGetAsyncError(llComm_t comm, llResult_t* asyncError) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommGetAsyncError: comm is NULL");
  LL_REQUIRE(asyncError != nullptr, llInvalidArgument, "llCommGetAsyncError: asyncError is NULL");
  *asyncError = (llResult_t)comm->asyncError->code;
  if (*asyncError != llSuccess) llDescribeAsyncError(comm);
  return llSuccess;
}

LL_API llResult_t llCommCount(const llComm_t comm, int* count) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommCount: comm is NULL");
  LL_REQUIRE(count != nullptr, llInvalidArgument, "llCommCount: count is NULL");
  *count = comm->nranks;
  return llSuccess;
}

LL_API llResult_t llCommUserRank(const llComm_t comm, int* rank) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCommUserRank: comm is NULL");
  LL_REQUIRE(rank != nullptr, llInvalidArgument, "llCommUserRank: rank is NULL");
  *rank = comm->rank;
  return llSuccess;
}
