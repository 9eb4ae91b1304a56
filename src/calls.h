// What every dispatch/combine call shares: the per-communicator call state (halves, sequence numbers,
// pending receive phases), argument-struct checks, and the kernel arguments common to both.
#pragma once

#include <cuda_runtime_api.h>

#include "comm.h"

// Device state, grid size and layout of a new communicator; freed by llCallsTeardown.
llResult_t llCallsSetup(llComm* comm);
void llCallsTeardown(llComm* comm);

// The half the next call uses, refusing a call that would overwrite a pending receive phase
// (the double-buffer rule). `what` names the call in the message.
llResult_t llCallsReserveHalf(llComm* comm, const char* what, int* half);

// Marks the call made on `half` (after its launch succeeded).
void llCallsCommit(llComm* comm, int half);

// Kernel arguments common to dispatch and combine for a call on `half`.
llCommonKernelArgs llCallsCommonArgs(const llComm* comm, int half, int numTokens, int topk, int phases);

// Checks the size/magic header every argument struct starts with.
llResult_t llCheckStructHeader(const void* ptr, size_t size, unsigned magic, size_t expectSize, const char* what);

// Pointer checks with a message naming the argument: non-NULL and aligned to `align` bytes.
llResult_t llCheckPointer(const void* p, size_t align, const char* what);

// Records a send-only call's receive phase and fills the caller's hook.
void llCallsSetPending(llComm* comm, int half, const llDispatchKernelArgs* d, const llCombineKernelArgs* c,
                       llHook_t* hook);

// Entries of comm->pairRows per half (N * maxTopk).
size_t llCallsPairRowsPerHalf(const llComm* comm);

// Entries of comm->rowPairK per half: the dispatch's output rows (E_l * R * N).
size_t llCallsRowsPerHalf(const llComm* comm);

// E_l: entries of comm->ownCounts per half.
size_t llCallsLocalExperts(const llComm* comm);

// True if the call's receive phase is still pending (a hook not yet run).
bool llCallsIsPending(const llComm* comm, uint64_t call);
