// Compile-only: llep.h is valid C++17 and coexists with nccl.h-style declarations.
#include "llep.h"

typedef struct ncclComm* ncclComm_t;  // as nccl.h declares it: an identical typedef is legal

llResult_t abiCxxUse(llComm_t* comm, ncclComm_t nccl) {
  llConfig_t config = LL_CONFIG_INITIALIZER;
  config.maxTokensPerRank = 128;
  static_assert(sizeof(llUniqueId) == LL_UNIQUE_ID_BYTES, "unique id size is ABI");
  return llCommInitFromNccl(comm, nccl, &config);
}

llResult_t abiCxxDispatch(llComm_t comm, cudaStream_t stream) {
  llDispatchArgs_t args = LL_DISPATCH_ARGS_INITIALIZER;
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  llCombineArgs_t cargs = LL_COMBINE_ARGS_INITIALIZER;
  llHook_t hook = LL_HOOK_INITIALIZER;
  args.hook = &hook;
  llResult_t r = llDispatch(comm, &args, &handle, stream);
  if (r != llSuccess) return r;
  return llCombine(comm, &cargs, &handle, stream);
}
