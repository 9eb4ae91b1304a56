// llCombine: argument and handle checks, then one launch (send and receive phases, or send alone).
#include "api.h"
#include "calls.h"
#include "checks.h"
#include "device/dispatch.h"

namespace {

constexpr int kCombineFlags = LL_ZERO_COPY | LL_SEND_ONLY;

llResult_t checkHandle(const llComm* comm, const llDispatchHandle_t* h, const llCombineArgs_t* a) {
  LLCHECK(llCheckStructHeader(h, h ? h->size : 0, h ? h->magic : 0, sizeof(llDispatchHandle_t), "llCombine: handle"));
  LL_REQUIRE(h->internal[0] == comm->tag, llInvalidUsage, "llCombine: the handle comes from another communicator");
  LL_REQUIRE(h->maxTokensPerRank == comm->config.maxTokensPerRank && h->hidden == comm->config.hidden &&
                 h->numExperts == comm->config.numExperts,
             llInvalidUsage, "llCombine: the handle's shape (N %d, H %d, E %d) is not this communicator's",
             h->maxTokensPerRank, h->hidden, h->numExperts);
  uint64_t call = h->internal[1] >> 1, half = h->internal[1] & 1;
  LL_REQUIRE(!llCallsIsPending(comm, call), llInvalidUsage,
             "llCombine: the handle's dispatch was send-only and its hook has not run");
  LL_REQUIRE(comm->pairRowsCall[half] == call, llInvalidUsage,
             "llCombine: the handle is outdated: a later dispatch overwrote its state (combine before the next "
             "dispatch but one)");
  LL_REQUIRE(a->numTokens == h->numTokens, llInvalidArgument,
             "llCombine: numTokens = %d but the dispatch had %d", a->numTokens, h->numTokens);
  LLCHECK(llCheckPointer(h->srcInfo, 4, "llCombine: handle.srcInfo"));
  LLCHECK(llCheckPointer(h->layoutRange, 8, "llCombine: handle.layoutRange"));
  return llSuccess;
}

llResult_t checkArgs(const llComm* comm, const llCombineArgs_t* a) {
  LLCHECK(llCheckStructHeader(a, a ? a->size : 0, a ? a->magic : 0, sizeof(llCombineArgs_t), "llCombine: args"));
  LL_REQUIRE((a->flags & ~kCombineFlags) == 0, llInvalidArgument, "llCombine: flags 0x%x has bits llCombine does not take",
             a->flags);
  LL_REQUIRE(a->topk >= 1 && a->topk <= comm->config.maxTopk, llInvalidArgument,
             "llCombine: topk = %d is outside 1..%d (config.maxTopk)", a->topk, comm->config.maxTopk);
  LLCHECK(llCheckPointer(a->x, 16, "llCombine: args.x"));
  if (a->numTokens > 0) {
    LLCHECK(llCheckPointer(a->topkIdx, 8, "llCombine: args.topkIdx"));
    LLCHECK(llCheckPointer(a->topkWeights, 4, "llCombine: args.topkWeights"));
    LLCHECK(llCheckPointer(a->out, 16, "llCombine: args.out"));
  }
  if (a->waitTimeStats) LLCHECK(llCheckPointer(a->waitTimeStats, 8, "llCombine: args.waitTimeStats"));
  if (a->flags & LL_SEND_ONLY) {
    LL_REQUIRE(a->hook != nullptr, llInvalidArgument, "llCombine: LL_SEND_ONLY needs args.hook");
    LLCHECK(llCheckStructHeader(a->hook, a->hook->size, a->hook->magic, sizeof(llHook_t), "llCombine: args.hook"));
  }
  return llSuccess;
}

}  // namespace

LL_API llResult_t llCombine(llComm_t comm, const llCombineArgs_t* args, const llDispatchHandle_t* handle,
                            cudaStream_t stream) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llCombine: comm is NULL");
  LLCHECK(checkArgs(comm, args));
  LLCHECK(checkHandle(comm, handle, args));
  int half = 0;
  LLCHECK(llCallsReserveHalf(comm, "llCombine", &half));
  if (args->flags & LL_ZERO_COPY) {
    const char* expected = comm->buffer + comm->layout.half[half].sendOffset;
    LL_REQUIRE(args->x == expected && comm->zeroCopyCall == comm->calls + 1, llInvalidUsage,
               "llCombine: LL_ZERO_COPY needs x from llGetCombineBuffer, called right before this combine");
  }
  bool sendOnly = (args->flags & LL_SEND_ONLY) != 0;
  llCombineKernelArgs k{};
  k.c = llCallsCommonArgs(comm, half, args->numTokens, args->topk,
                          sendOnly ? LL_PHASE_SEND : LL_PHASE_SEND | LL_PHASE_RECV);
  k.x = static_cast<const uint16_t*>(args->x);
  k.topkIdx = args->topkIdx;
  k.topkWeights = args->topkWeights;
  k.srcInfo = handle->srcInfo;
  k.layoutRange = handle->layoutRange;
  k.out = static_cast<uint16_t*>(args->out);
  k.waitTimeStats = args->waitTimeStats;
  k.pairRows = comm->pairRows + (handle->internal[1] & 1) * llCallsPairRowsPerHalf(comm);
  k.rowPairK = comm->rowPairK + (handle->internal[1] & 1) * llCallsRowsPerHalf(comm);
  k.rowBytes = comm->layout.combineRowBytes;
  CUDACHECK(llLaunchCombine(k, comm->blocks, stream));
  if (sendOnly) llCallsSetPending(comm, half, nullptr, &k, args->hook);
  llCallsCommit(comm, half);
  return llSuccess;
}
