// llDispatch: argument checks, then one launch (send and receive phases, or the send phase alone).
#include "api.h"
#include "calls.h"
#include "checks.h"
#include "device/dispatch.h"

namespace {

constexpr int kDispatchFlags = LL_FP8 | LL_ROUND_SCALE | LL_UE8M0 | LL_SEND_ONLY;

llResult_t checkArgs(const llComm* comm, const llDispatchArgs_t* a) {
  const llCommConfig& c = comm->config;
  LLCHECK(llCheckStructHeader(a, a ? a->size : 0, a ? a->magic : 0, sizeof(llDispatchArgs_t), "llDispatch: args"));
  LL_REQUIRE((a->flags & ~kDispatchFlags) == 0, llInvalidArgument, "llDispatch: flags 0x%x has bits llDispatch does not take",
             a->flags);
  LL_REQUIRE((a->flags & LL_FP8) || !(a->flags & (LL_ROUND_SCALE | LL_UE8M0)), llInvalidArgument,
             "llDispatch: LL_ROUND_SCALE and LL_UE8M0 need LL_FP8");
  LL_REQUIRE(a->numTokens >= 0 && a->numTokens <= c.maxTokensPerRank, llInvalidArgument,
             "llDispatch: numTokens = %d is outside 0..%d (config.maxTokensPerRank)", a->numTokens, c.maxTokensPerRank);
  LL_REQUIRE(a->topk >= 1 && a->topk <= c.maxTopk, llInvalidArgument, "llDispatch: topk = %d is outside 1..%d (config.maxTopk)",
             a->topk, c.maxTopk);
  if (a->numTokens > 0) {
    LLCHECK(llCheckPointer(a->x, 16, "llDispatch: args.x"));
    LLCHECK(llCheckPointer(a->topkIdx, 8, "llDispatch: args.topkIdx"));
  }
  LLCHECK(llCheckPointer(a->recvX, 16, "llDispatch: args.recvX"));
  if (a->flags & LL_FP8) LLCHECK(llCheckPointer(a->recvScales, 4, "llDispatch: args.recvScales"));
  LLCHECK(llCheckPointer(a->recvCount, 4, "llDispatch: args.recvCount"));
  LLCHECK(llCheckPointer(a->srcInfo, 4, "llDispatch: args.srcInfo"));
  LLCHECK(llCheckPointer(a->layoutRange, 8, "llDispatch: args.layoutRange"));
  if (a->cumulativeRecvStats) LLCHECK(llCheckPointer(a->cumulativeRecvStats, 4, "llDispatch: args.cumulativeRecvStats"));
  if (a->waitTimeStats) LLCHECK(llCheckPointer(a->waitTimeStats, 8, "llDispatch: args.waitTimeStats"));
  if (a->flags & LL_SEND_ONLY) {
    LL_REQUIRE(a->hook != nullptr, llInvalidArgument, "llDispatch: LL_SEND_ONLY needs args.hook");
    LLCHECK(llCheckStructHeader(a->hook, a->hook->size, a->hook->magic, sizeof(llHook_t), "llDispatch: args.hook"));
  }
  return llSuccess;
}

}  // namespace

LL_API llResult_t llDispatch(llComm_t comm, const llDispatchArgs_t* args, llDispatchHandle_t* handle,
                             cudaStream_t stream) {
  LL_REQUIRE(comm != nullptr, llInvalidArgument, "llDispatch: comm is NULL");
  LLCHECK(checkArgs(comm, args));
  LLCHECK(llCheckStructHeader(handle, handle ? handle->size : 0, handle ? handle->magic : 0,
                              sizeof(llDispatchHandle_t), "llDispatch: handle"));
  int half = 0;
  LLCHECK(llCallsReserveHalf(comm, "llDispatch", &half));
  bool sendOnly = (args->flags & LL_SEND_ONLY) != 0;
  llDispatchKernelArgs k{};
  k.c = llCallsCommonArgs(comm, half, args->numTokens, args->topk,
                          sendOnly ? LL_PHASE_SEND : LL_PHASE_SEND | LL_PHASE_RECV);
  k.x = static_cast<const uint16_t*>(args->x);
  k.topkIdx = args->topkIdx;
  k.flags = args->flags & (LL_FP8 | LL_ROUND_SCALE | LL_UE8M0);
  k.msgBytes = comm->layout.dispatchMsgBytes;
  k.recvX = args->recvX;
  k.recvScales = args->recvScales;
  k.recvCount = args->recvCount;
  k.srcInfo = args->srcInfo;
  k.layoutRange = args->layoutRange;
  k.cumulativeRecvStats = args->cumulativeRecvStats;
  k.waitTimeStats = args->waitTimeStats;
  k.pairRows = comm->pairRows + half * llCallsPairRowsPerHalf(comm);
  k.rowPairK = comm->rowPairK + half * llCallsRowsPerHalf(comm);
  k.ownCounts = comm->ownCounts + half * llCallsLocalExperts(comm);
  CUDACHECK(llLaunchDispatch(k, comm->blocks, stream));
  comm->pairRowsCall[half] = comm->calls + 1;
  if (sendOnly) llCallsSetPending(comm, half, &k, nullptr, args->hook);
  llCallsCommit(comm, half);

  handle->numTokens = args->numTokens;
  handle->srcInfo = args->srcInfo;
  handle->layoutRange = args->layoutRange;
  handle->maxTokensPerRank = comm->config.maxTokensPerRank;
  handle->hidden = comm->config.hidden;
  handle->numExperts = comm->config.numExperts;
  handle->internal[0] = comm->tag;
  handle->internal[1] = comm->calls << 1 | (uint64_t)half;  // the call, and the half holding its pairRows
  return llSuccess;
}
