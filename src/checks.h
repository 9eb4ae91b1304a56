// One-line checks that turn a failed call into an llResult_t, record where it was first seen
// (LL_WARN keeps it as the last error) and leave a breadcrumb per level on the way up (INFO).
#pragma once

#include <cuda_runtime_api.h>

#include <cerrno>
#include <cstring>

#include "debug.h"
#include "llep.h"

// Propagate a failed llResult_t.
#define LLCHECK(call)                                                               \
  do {                                                                              \
    llResult_t llRes_ = (call);                                                     \
    if (llRes_ != llSuccess) {                                                      \
      LL_INFO(LL_ALL, "%s:%d -> %d", __FILE__, __LINE__, (int)llRes_);              \
      return llRes_;                                                                \
    }                                                                               \
  } while (0)

// Argument checks: a false condition is the caller's fault, reported with a message naming it.
#define LL_REQUIRE(cond, code, ...)                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      LL_WARN(__VA_ARGS__);                                                         \
      return (code);                                                                \
    }                                                                               \
  } while (0)

// A CUDA runtime call. The error is also cleared from the runtime so the next call starts clean.
inline bool llCudaFailed(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return false;
  (void)cudaGetLastError();
  llDebugLog(LL_LOG_WARN, LL_ALL, file, line, "CUDA error: %s: '%s' (%s:%d)", call, cudaGetErrorString(err), file,
             line);
  return true;
}

#define CUDACHECK(call)                                                  \
  do {                                                                   \
    if (llCudaFailed((call), #call, __FILE__, __LINE__)) return llCudaError; \
  } while (0)

// A system call returning -1 on failure; retried on EINTR.
#define SYSCHECKVAL(call, name, retval)                                             \
  do {                                                                              \
    do {                                                                            \
      (retval) = (call);                                                            \
    } while ((retval) == -1 && errno == EINTR);                                     \
    if ((retval) == -1) {                                                           \
      LL_WARN("system call %s failed: %s", name, strerror(errno));                  \
      return llSystemError;                                                         \
    }                                                                               \
  } while (0)

#define SYSCHECK(call, name)                                                        \
  do {                                                                              \
    int llRet_;                                                                     \
    SYSCHECKVAL(call, name, llRet_);                                                \
    (void)llRet_;                                                                   \
  } while (0)
