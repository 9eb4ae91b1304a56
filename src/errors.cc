// Result strings, the last-error message and the library version: the C API that needs no comm.
#include "api.h"
#include "debug.h"
#include "llep.h"

LL_API const char* llGetErrorString(llResult_t result) {
  switch (result) {
    case llSuccess: return "no error";
    case llCudaError: return "unhandled cuda error (run with LLEP_DEBUG=INFO for details)";
    case llSystemError: return "unhandled system error (run with LLEP_DEBUG=INFO for details)";
    case llInternalError: return "internal error - please report this issue to the llep developers";
    case llInvalidArgument: return "invalid argument (run with LLEP_DEBUG=WARN for details)";
    case llInvalidUsage: return "invalid usage (run with LLEP_DEBUG=WARN for details)";
    case llRemoteError: return "remote process exited or there was a network error";
    case llInProgress: return "llep operation in progress";
    case llTimeout: return "a peer did not answer within the timeout";
    default: return "unknown result code";
  }
}

// Messages are kept per thread; a communicator adds nothing yet, so comm is accepted and unused
// (NCCL's signature, so callers can pass theirs).
LL_API const char* llGetLastError(llComm_t /*comm*/) { return llLastError(); }

LL_API llResult_t llGetVersion(int* version) {
  if (version == nullptr) {
    LL_WARN("llGetVersion: version is NULL");
    return llInvalidArgument;
  }
  *version = LLEP_VERSION;
  return llSuccess;
}
