// What the host hands the dispatch and combine kernels: plain structs passed by value (so a launch
// captured in a CUDA graph carries everything it needs), shared by src/ and device/.
#pragma once

#include <stdint.h>

#include "device/route.h"
#include "llep.h"

// A dispatch message: 16-byte header (int32 token, int32 k, 8 bytes reserved), then the payload:
// bf16 [H], or fp8 [H] followed by fp32 scales [H/128].
constexpr uint32_t kLlMsgHeaderBytes = 16;

// The combine's receive region holds one row per (token, k) of the rank's tokens, at token *
// kLlCombineSlotsPerToken + k: compact (N * 16 rows, where an [expert][token] layout spans E * N), so
// the rows a sender writes into a peer lie in a few pages. The stride is the largest topk, so that
// sender and receiver agree whatever topk a call has.
constexpr int kLlCombineSlotsPerToken = LL_MAX_TOPK;

// Kernel phases (a send-only call launches SEND, its hook RECV, a plain call both in one kernel).
enum : int { LL_PHASE_SEND = 0x1, LL_PHASE_RECV = 0x2 };

// Device-side state of one communicator (device memory, not symmetric). The sequence numbers live on
// the GPU so that graph replays advance them: every call, replayed or not, is a new sequence.
struct llDeviceState {
  uint64_t seq;          // sequence number of the last call
  uint64_t halfSeq[2];   // sequence number of the last call on each half
  uint32_t sendDone[2];  // blocks that finished the send phase (per half); the last one signals
  uint32_t recvDone[2];  // blocks that finished a receive phase that returns its own credits; the last one does
  int32_t error;         // first llResult_t found on the GPU (also copied to the host-mapped word)
  int32_t pad;
  uint64_t creditOwed[2];  // per half: the call whose fused receive phase the next kernel returns credits for
};

// The first error the GPU found, in host-mapped memory so the host can read it while kernels still run.
struct llAsyncError {
  int32_t code;         // llResult_t; 0 while none
  int32_t peer;         // ibgda: the peer whose QP completed a WQE with an error CQE, else -1
  uint32_t syndrome;    // that CQE's syndrome (transport/ibgda/mlx5_cqe.h)
  uint32_t wqeCounter;  // and the failed WQE's counter
};

struct llCommonKernelArgs {
  const llRoute* routes;     // [R]
  char* ownBuffer;           // this rank's symmetric buffer
  llDeviceState* state;
  volatile llAsyncError* asyncError;  // host-mapped: first error found on the GPU
  int rank, nranks, numExperts, localExperts;
  int maxTokens, hidden, topk, numTokens;
  int half;
  int phases;                // LL_PHASE_*
  int sysScope;              // 1 when a peer is another GPU: fences and signals need system scope
  int deferCredits;          // 1 when every peer is p2p: a fused call's credits go out from the next kernel
  uint64_t timeoutNs;
  uint64_t signalOffset;     // of this call's half
  uint64_t signalOffsetOfHalf[2];  // of either half (credits owed on the other); signalOffset repeats
                                   // [half] so that hot paths do not index the kernel's parameters
  uint64_t sendOffset;
  uint64_t recvOffset;
  uint32_t dispatchSignalWord, combineSignalWord, creditWord;
};

struct llDispatchKernelArgs {
  llCommonKernelArgs c;
  const uint16_t* x;          // bf16 [T, H]
  const int64_t* topkIdx;     // [T, K]
  int flags;                  // LL_FP8 | LL_ROUND_SCALE | LL_UE8M0
  uint64_t msgBytes;
  void* recvX;
  void* recvScales;
  int32_t* recvCount;
  int32_t* srcInfo;
  int64_t* layoutRange;
  int32_t* cumulativeRecvStats;
  int64_t* waitTimeStats;
  int32_t* pairRows;          // [N*K] out: output row of each pair whose expert is this rank's, else -1
  int8_t* rowPairK;           // [E_l, R*N] out: of each row received from a peer, its pair's k at the source
  int32_t* ownCounts;         // [E_l] a send-only call's own pairs per local expert, for its hook
};

struct llCombineKernelArgs {
  llCommonKernelArgs c;
  const uint16_t* x;          // bf16 [E_l, R*N, H]
  const int64_t* topkIdx;     // [T, K]
  const float* topkWeights;   // [T, K]
  const int32_t* srcInfo;     // [E_l, R*N]
  const int64_t* layoutRange; // [E_l, R]
  uint16_t* out;              // bf16 [T, H]
  int64_t* waitTimeStats;
  const int32_t* pairRows;    // the dispatch's: row of x for each pair whose expert is this rank's
  const int8_t* rowPairK;     // the dispatch's: k of each row's pair at its source rank
  uint64_t rowBytes;
};
