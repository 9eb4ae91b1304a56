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

/* Creates a rendezvous: opens a listening socket on this host, starts a thread that serves it until
 * all ranks of one communicator have met or LLEP_BOOTSTRAP_TIMEOUT_MS passes, and returns its id.
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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LLEP_H_ */
