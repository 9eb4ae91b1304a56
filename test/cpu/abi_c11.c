/* Compile-only: llep.h is valid strict C11 (-Wall -Wextra -Werror -pedantic), and the initializer
 * works as an initializer and in an assignment. */
#include "llep.h"

llResult_t abiC11Use(llComm_t* comm, llUniqueId id) {
  llConfig_t config = LL_CONFIG_INITIALIZER;
  config.maxTokensPerRank = 128;
  config.hidden = 7168;
  config.numExperts = 256;
  config = LL_CONFIG_INITIALIZER;
  return llCommInitRank(comm, 1, id, 0, &config);
}

llResult_t abiC11Dispatch(llComm_t comm, cudaStream_t stream) {
  llDispatchArgs_t args = LL_DISPATCH_ARGS_INITIALIZER;
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  llCombineArgs_t cargs = LL_COMBINE_ARGS_INITIALIZER;
  llHook_t hook = LL_HOOK_INITIALIZER;
  args.hook = &hook;
  llResult_t r = llDispatch(comm, &args, &handle, stream);
  if (r != llSuccess) return r;
  return llCombine(comm, &cargs, &handle, stream);
}
