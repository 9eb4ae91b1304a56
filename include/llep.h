/*
 * llep — low-latency Mixture-of-Experts dispatch and combine across GPUs.
 *
 * The only header users include. C11 and C++ compatible. Conventions follow NCCL: every call returns
 * llResult_t, outputs come first, handles are opaque, configs start with size/magic/version and are
 * filled by an initializer macro.
 *
 * Memory notes on every pointer say [host] or [device] and who owns it.
 */
#ifndef LLEP_H_
#define LLEP_H_

#include <cuda_runtime_api.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLEP_MAJOR 0
#define LLEP_MINOR 1
#define LLEP_PATCH 0
#define LLEP_VERSION_CODE(X, Y, Z) ((X) * 10000 + (Y) * 100 + (Z))
#define LLEP_VERSION LLEP_VERSION_CODE(LLEP_MAJOR, LLEP_MINOR, LLEP_PATCH)

/* Same numeric meaning as ncclResult_t (llTimeout is llep's own addition). */
typedef enum {
  llSuccess = 0,
  llCudaError = 1,        /* a CUDA call failed */
  llSystemError = 2,      /* a system call failed (sockets, memory, files) */
  llInternalError = 3,    /* a bug in llep */
  llInvalidArgument = 4,  /* a bad value or pointer was passed */
  llInvalidUsage = 5,     /* a valid value used in a way the contract forbids */
  llRemoteError = 6,      /* a peer failed or disagreed */
  llInProgress = 7,       /* not finished yet */
  llTimeout = 8,          /* a peer did not answer within the configured timeout */
  llNumResults = 9
} llResult_t;

/* Opaque communicator handle. */
typedef struct llComm* llComm_t;

/* Who owns a rendezvous, as produced by llGetUniqueId; pass its bytes to every rank unchanged. */
#define LL_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[LL_UNIQUE_ID_BYTES];
} llUniqueId;

/* NCCL's communicator, declared here so that users need not include nccl.h (an identical typedef is
 * legal in C11 and C++). */
#ifndef NCCL_H_
typedef struct ncclComm* ncclComm_t;
#endif

/* Transports a communicator may use (llConfig_t.transports). */
#define LL_TRANSPORT_P2P 0x1   /* CUDA IPC / NVLink / PCIe peer loads and stores */
#define LL_TRANSPORT_IBGDA 0x2 /* GPU-initiated RDMA on mlx5 */
#define LL_TRANSPORT_ALL (LL_TRANSPORT_P2P | LL_TRANSPORT_IBGDA)

/* Largest top-k a communicator supports. */
#define LL_MAX_TOPK 16

/* Communicator configuration. Always start from LL_CONFIG_INITIALIZER; fields left at
 * LL_CONFIG_UNDEF_INT take the library default (or the LLEP_* environment value), except the three
 * shape fields, which must be set. All ranks must pass the same shape. */
#define LL_CONFIG_MAGIC 0x4c4c4550u /* "LLEP" */
#define LL_CONFIG_UNDEF_INT INT_MIN
typedef struct llConfig_v1 {
  size_t size;           /* sizeof(llConfig_t) as the caller compiled it */
  unsigned int magic;    /* LL_CONFIG_MAGIC */
  unsigned int version;  /* LLEP_VERSION the caller compiled against */
  int maxTokensPerRank;  /* N: most tokens one rank dispatches in one call; required, > 0 */
  int hidden;            /* H: elements per token; required, a multiple of 128 */
  int numExperts;        /* E: global experts; required, a multiple of the rank count */
  int maxTopk;           /* K: most experts per token, 1..LL_MAX_TOPK; default LL_MAX_TOPK */
  int transports;        /* LL_TRANSPORT_* mask allowed; default from LLEP_TRANSPORT (auto = all) */
  int timeoutMs;         /* bound on every wait (bootstrap and GPU); default LLEP_TIMEOUT_MS */
  int numSms;            /* SMs the kernels may use; default: library choice */
  size_t bufferBytes;    /* symmetric buffer bytes; 0 = llGetBufferSizeHint for this shape */
} llConfig_t;

#ifdef __cplusplus
#define LL_CONFIG_LITERAL_(...) llConfig_t{__VA_ARGS__}
#else
#define LL_CONFIG_LITERAL_(...) ((llConfig_t){__VA_ARGS__})
#endif
#define LL_CONFIG_INITIALIZER                                                                    \
  LL_CONFIG_LITERAL_(sizeof(llConfig_t), LL_CONFIG_MAGIC, LLEP_VERSION,                          \
                     LL_CONFIG_UNDEF_INT, LL_CONFIG_UNDEF_INT, LL_CONFIG_UNDEF_INT,              \
                     LL_CONFIG_UNDEF_INT, LL_CONFIG_UNDEF_INT, LL_CONFIG_UNDEF_INT,              \
                     LL_CONFIG_UNDEF_INT, 0)

/* Version of the library that is loaded, as LLEP_VERSION_CODE. [host] version: out. */
llResult_t llGetVersion(int* version);

/* Static text for a result code; never NULL. */
const char* llGetErrorString(llResult_t result);

/* The last error message this thread saw (one line), or "" if none. comm may be NULL. The string is
 * owned by llep and valid until the thread's next llep call. */
const char* llGetLastError(llComm_t comm);

/* Creates a rendezvous: opens a listening socket on this host, starts a thread that serves it, and
 * returns its id. The thread serves communicators one after another (ranks that create several from
 * one id create them in the same order) and ends once none has come for LLEP_BOOTSTRAP_TIMEOUT_MS.
 * Call on one process (which need not be a rank) and hand the bytes to every rank.
 * [host] uniqueId: out, caller-owned. */
llResult_t llGetUniqueId(llUniqueId* uniqueId);

/* Creates a communicator of nranks ranks; rank is this process's rank. Collective: every rank calls it
 * with the same id and config shape. Uses the current CUDA device. [host] comm: out; [host] config:
 * in, read during the call only. */
llResult_t llCommInitRank(llComm_t* comm, int nranks, llUniqueId commId, int rank,
                          const llConfig_t* config);

/* Like llCommInitRank, but rank, size and rendezvous come from the environment a launcher sets:
 * LLEP_UNIQUE_ID (hex, from llrun) or MASTER_ADDR/MASTER_PORT (torchrun style, rank 0 listens), and
 * RANK/WORLD_SIZE (or OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/PMI_SIZE). */
llResult_t llCommInitFromEnv(llComm_t* comm, const llConfig_t* config);

/* Creates a communicator with the ranks of an existing NCCL communicator, which is used only to
 * exchange setup data during this call (ncclAllGather on the comm's device). NCCL is found at run time:
 * the copy already loaded in the process, else libnccl.so.2, or LLEP_NCCL_LIBRARY. Collective over
 * the NCCL communicator's ranks. [host] nccl: in, caller-owned, not retained. */
llResult_t llCommInitFromNccl(llComm_t* comm, ncclComm_t nccl, const llConfig_t* config);

/* Destroys a communicator. Collective: waits for every rank so no peer still addresses this rank's
 * memory. Frees everything the communicator owns. */
llResult_t llCommDestroy(llComm_t comm);

/* An error found asynchronously (on the GPU or by a peer); llSuccess if none. [host] asyncError: out. */
llResult_t llCommGetAsyncError(llComm_t comm, llResult_t* asyncError);

/* Number of ranks. [host] count: out. */
llResult_t llCommCount(const llComm_t comm, int* count);

/* This process's rank. [host] rank: out. */
llResult_t llCommUserRank(const llComm_t comm, int* rank);

/* Bytes of symmetric buffer a communicator of this shape needs (both alternating buffers, top-k up to
 * LL_MAX_TOPK). N = max tokens per rank, H = hidden, R = ranks, E = experts. [host] bytes: out. */
llResult_t llGetBufferSizeHint(int maxTokensPerRank, int hidden, int nranks, int numExperts,
                               size_t* bytes);


/* ---------------------------------------------------------------------------------------------- *
 * Dispatch and combine (DeepEP low-latency semantics). Shapes use N = config.maxTokensPerRank,
 * H = config.hidden, E = config.numExperts, R = ranks, E_l = E / R, T = tokens this call, K = top-k.
 * All calls on one communicator must be ordered on the GPU (one stream, or streams joined by events):
 * every rank makes the same sequence of calls. Nothing here synchronises with the host, so a
 * dispatch + combine can be captured in a CUDA graph and replayed.
 *
 * Results that live in library memory: a send-only call's pending receive phase, and the zero-copy
 * combine buffer. Two internal buffers alternate between calls, so at most two such results may be
 * outstanding; a call that would overwrite a third is refused with llInvalidUsage.
 * ---------------------------------------------------------------------------------------------- */

#define LL_ARGS_MAGIC 0x4c4c4152u /* "LLAR" */

/* llDispatchArgs_t.flags / llCombineArgs_t.flags */
#define LL_FP8 0x1          /* dispatch: recvX is fp8 e4m3 with one fp32 scale per 128 channels */
#define LL_ROUND_SCALE 0x2  /* dispatch, with LL_FP8: scales rounded up to powers of two */
#define LL_UE8M0 0x4        /* dispatch, with LL_FP8: power-of-two scales packed as 8-bit exponents
                               (implies LL_ROUND_SCALE) */
#define LL_SEND_ONLY 0x8    /* enqueue the send phase only; llHookRun enqueues the receive phase
                               (the call's topkIdx and output pointers must stay valid until then) */
#define LL_ZERO_COPY 0x10   /* combine: x is the buffer from llGetCombineBuffer */

/* What combine needs from its dispatch. Filled by llDispatch; plain data, may be copied. */
typedef struct {
  size_t size;          /* sizeof(llDispatchHandle_t) */
  unsigned int magic;   /* LL_ARGS_MAGIC */
  int numTokens;        /* T of the dispatch */
  int32_t* srcInfo;     /* [device] caller-owned, [E_l, R*N]: as passed to llDispatch */
  int64_t* layoutRange; /* [device] caller-owned, [E_l, R]: as passed to llDispatch */
  int maxTokensPerRank, hidden, numExperts;
  uint64_t internal[2]; /* communicator and call it belongs to */
} llDispatchHandle_t;

/* A send-only call's pending receive phase. */
typedef struct {
  size_t size;         /* sizeof(llHook_t) */
  unsigned int magic;  /* LL_ARGS_MAGIC */
  uint64_t internal[3];
} llHook_t;

typedef struct {
  size_t size;                  /* sizeof(llDispatchArgs_t) */
  unsigned int magic;           /* LL_ARGS_MAGIC */
  int flags;                    /* LL_FP8, LL_ROUND_SCALE, LL_UE8M0, LL_SEND_ONLY */
  const void* x;                /* [device] in: bf16 [T, H], row-major, 16-byte aligned */
  const int64_t* topkIdx;       /* [device] in: int64 [T, K], values in [-1, E); -1 = no expert */
  int numTokens;                /* T: 0..N (may differ per rank and per call) */
  int topk;                     /* K: 1..config.maxTopk */
  void* recvX;                  /* [device] out, caller-owned: [E_l, R*N, H] bf16, or fp8 e4m3 with LL_FP8;
                                   rows [0, recvCount[e]) of expert e are valid: this rank's own
                                   tokens first, then those of ranks rank+1, ..., rank-1 (mod R), each
                                   in (token, k) order; 16-byte aligned */
  void* recvScales;             /* [device] out, caller-owned, LL_FP8 only: float, logical [E_l, R*N, H/128],
                                   stored [E_l, H/128, R*N] (token fastest); with LL_UE8M0 int32,
                                   logical [E_l, R*N, ceil(H/512)], stored [E_l, ceil(H/512), R*N], four
                                   exponent bytes per int32 (group 4p+j in byte j) */
  int32_t* recvCount;           /* [device] out, caller-owned: [E_l] rows received per local expert */
  int32_t* srcInfo;             /* [device] out, caller-owned: [E_l, R*N] each row's token index at its source */
  int64_t* layoutRange;         /* [device] out, caller-owned: [E_l, R], per source rank
                                   (begin row << 32) | row count */
  int32_t* cumulativeRecvStats; /* [device] in/out, optional (NULL): [E_l] += rows received */
  int64_t* waitTimeStats;       /* [device] in/out, optional (NULL): [R] += ns waited for each source */
  llHook_t* hook;               /* [host] out, with LL_SEND_ONLY: pass to llHookRun */
} llDispatchArgs_t;

typedef struct {
  size_t size;                /* sizeof(llCombineArgs_t) */
  unsigned int magic;         /* LL_ARGS_MAGIC */
  int flags;                  /* LL_ZERO_COPY, LL_SEND_ONLY */
  const void* x;              /* [device] in: bf16 [E_l, R*N, H], the expert outputs in the rows dispatch
                                 produced; with LL_ZERO_COPY the buffer from llGetCombineBuffer */
  const int64_t* topkIdx;     /* [device] in: the dispatch's int64 [T, K] */
  const float* topkWeights;   /* [device] in: fp32 [T, K] */
  int numTokens;              /* T: as in the dispatch */
  int topk;                   /* K: as in the dispatch */
  void* out;                  /* [device] out, caller-owned: bf16 [T, H]; out[t] = sum over k with
                                 topkIdx[t][k] >= 0 of w[t][k] * y_k[t], in fp32, rounded once */
  int64_t* waitTimeStats;     /* [device] in/out, optional (NULL): [R] += ns waited for each rank */
  llHook_t* hook;             /* [host] out, with LL_SEND_ONLY: pass to llHookRun */
} llCombineArgs_t;

#ifdef __cplusplus
#define LL_ARGS_LITERAL_(type, ...) type{__VA_ARGS__}
#else
#define LL_ARGS_LITERAL_(type, ...) ((type){__VA_ARGS__})
#endif
/* Every field is named so that strict C and C++ builds see a complete initializer. */
#define LL_DISPATCH_ARGS_INITIALIZER                                                              \
  LL_ARGS_LITERAL_(llDispatchArgs_t, sizeof(llDispatchArgs_t), LL_ARGS_MAGIC, 0, NULL, NULL, 0, 0,  \
                   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
#define LL_COMBINE_ARGS_INITIALIZER                                                               \
  LL_ARGS_LITERAL_(llCombineArgs_t, sizeof(llCombineArgs_t), LL_ARGS_MAGIC, 0, NULL, NULL, NULL, 0, 0, \
                   NULL, NULL, NULL)
#define LL_HOOK_INITIALIZER LL_ARGS_LITERAL_(llHook_t, sizeof(llHook_t), LL_ARGS_MAGIC, {0, 0, 0})
#define LL_DISPATCH_HANDLE_INITIALIZER                                                            \
  LL_ARGS_LITERAL_(llDispatchHandle_t, sizeof(llDispatchHandle_t), LL_ARGS_MAGIC, 0, NULL, NULL, 0, 0, 0, \
                   {0, 0})

/* Sends each token to the ranks of its top-k experts and lays the received tokens out per local
 * expert. Collective; stream-ordered. [host] args: read during the call only; [host] handle: out. */
llResult_t llDispatch(llComm_t comm, const llDispatchArgs_t* args, llDispatchHandle_t* handle,
                      cudaStream_t stream);

/* Sends the expert outputs back to the tokens' ranks and reduces them with the router weights.
 * Collective; stream-ordered. [host] args, handle: read during the call only. */
llResult_t llCombine(llComm_t comm, const llCombineArgs_t* args, const llDispatchHandle_t* handle,
                     cudaStream_t stream);

/* Enqueues the receive phase of a send-only call (DeepEP's receive hook). Once per hook. */
llResult_t llHookRun(llComm_t comm, llHook_t* hook, cudaStream_t stream);

/* The library buffer the next llCombine may read its expert outputs from (LL_ZERO_COPY): bf16
 * [E_l, R*N, H]. Valid for the next call on this communicator only, which must be that combine.
 * [device] *buffer: library-owned. */
llResult_t llGetCombineBuffer(llComm_t comm, void** buffer);

/* Resets every signal of both internal buffers (e.g. after an error). Collective; synchronises the
 * stream and the ranks; no call may be in flight. */
llResult_t llCleanBuffer(llComm_t comm, cudaStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LLEP_H_ */
