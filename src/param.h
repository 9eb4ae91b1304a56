// Every tunable is an LLEP_* environment variable, declared once in the table below with its default.
// llParam<Name>() reads it on first use; LLEP_DEBUG=INFO prints the values in force (llParamDumpAll).
#pragma once

#include <cstdint>

// X(Name, "SUFFIX of LLEP_SUFFIX", default, "what it does")
#define LL_INT_PARAMS(X)                                                                          \
  X(TimeoutMs, "TIMEOUT_MS", 60000, "bound on every wait (bootstrap and GPU), ms")               \
  X(BootstrapTimeoutMs, "BOOTSTRAP_TIMEOUT_MS", 60000, "how long a rendezvous root serves, ms")  \
  X(ConnectRetryMs, "CONNECT_RETRY_MS", 50, "pause between bootstrap connect attempts, ms")      \
  X(NumSms, "NUM_SMS", 0, "SMs the kernels may use (0 = library choice)")                        \
  X(LocalRanks, "LOCAL_RANKS", 0, "ranks per simulated node, for tests (0 = by hostname)")       \
  X(IbGidIndex, "IB_GID_INDEX", -1, "RoCE: GID table index to use (-1 = auto: RoCE v2 IPv4, then IPv6)") \
  X(IbTc, "IB_TC", 0, "RoCE: IP traffic class of the QPs, 0..255 (DSCP = TC >> 2)")

// X(Name, "SUFFIX", "default", "what it does")
#define LL_STR_PARAMS(X)                                                                          \
  X(Transport, "TRANSPORT", "auto", "auto | p2p | ibgda: which transports routes may use")        \
  X(SocketIfname, "SOCKET_IFNAME", "", "interface whose address the bootstrap listens on")       \
  X(NcclLibrary, "NCCL_LIBRARY", "", "NCCL library to load (default: already loaded, libnccl.so.2)") \
  X(UniqueId, "UNIQUE_ID", "", "rendezvous id as hex, set by llrun for llCommInitFromEnv")        \
  X(BootstrapSecret, "BOOTSTRAP_SECRET", "", "shared secret for MASTER_ADDR/PORT rendezvous")      \
  X(IbDevice, "IB_DEVICE", "", "'' = rdma-core (libibverbs.so.1, libmlx5.so.1); model = the software mlx5 device") \
  X(IbHca, "IB_HCA", "", "RDMA device to use (default: the first one)")                            \
  X(ModelJob, "MODEL_JOB", "", "software device: job directory (or name) its ranks meet in over sockets") \
  X(ModelLink, "MODEL_LINK", "ib", "software device: port link layer, ib | eth (RoCE v2)")

#define LL_DECLARE_INT_PARAM(name, env, deflt, doc) int64_t llParam##name();
#define LL_DECLARE_STR_PARAM(name, env, deflt, doc) const char* llParam##name();
LL_INT_PARAMS(LL_DECLARE_INT_PARAM)
LL_STR_PARAMS(LL_DECLARE_STR_PARAM)
#undef LL_DECLARE_INT_PARAM
#undef LL_DECLARE_STR_PARAM

// Parsers used by the accessors; exposed for tests. A malformed value is reported (LL_WARN) and the
// default is used. Integers accept decimal, 0x hex and a K/M/G suffix (powers of 1024).
int64_t llParamParseInt(const char* envName, int64_t deflt);
const char* llParamParseStr(const char* envName, const char* deflt);

// Logs every parameter with its value and whether it came from the environment (INFO, ENV subsystem).
void llParamDumpAll();
