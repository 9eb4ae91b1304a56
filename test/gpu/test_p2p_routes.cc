// GPU test of the foundation: communicators over the unique-id bootstrap, routes checked by writing
// into every peer's buffer, and clean teardown (GPU memory and file descriptors back where they were).
//
//   llrun -np R test_p2p_routes cycles     # warm-up + 3 init/check/destroy cycles
//   llrun -np R test_p2p_routes disagree   # rank 1 passes another hidden size: all ranks must refuse
//   llrun -np R test_p2p_routes transports # ibgda without an RDMA device fails at init, naming why; auto
//                                          # then routes every peer of this machine through p2p
//   llrun -np 2 test_p2p_routes ibgda_error # (LLEP_IB_DEVICE=model) a dispatch over ibgda whose route
//                                          # holds a wrong rkey: an async llRemoteError naming the peer
// Exit 77 where there is no GPU.
#include <cuda_runtime_api.h>
#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "comm.h"
#include "llep.h"
#include "test/gpu/route_check.h"

namespace {

int gRank = 0, gWorld = 1;

#define CHECK(cond, ...)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "rank %d: FAIL %s:%d: ", gRank, __FILE__, __LINE__);          \
      fprintf(stderr, __VA_ARGS__);                                                 \
      fprintf(stderr, " (last error: %s)\n", llGetLastError(nullptr));              \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

int envInt(const char* name, int deflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : deflt;
}

int openFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

size_t freeGpuBytes() {
  size_t freeB = 0, total = 0;
  CHECK(cudaMemGetInfo(&freeB, &total) == cudaSuccess, "cudaMemGetInfo");
  return freeB;
}

// A rendezvous on MASTER_ADDR at MASTER_PORT + offset (rank 0 listens), or in-process for one rank.
llUniqueId directId(int portOffset) {
  llUniqueId id;
  const char* addr = getenv("MASTER_ADDR");
  int port = envInt("MASTER_PORT", 0);
  if (gWorld == 1 && (addr == nullptr || port == 0)) {
    CHECK(llGetUniqueId(&id) == llSuccess, "llGetUniqueId");
    return id;
  }
  CHECK(addr && port, "MASTER_ADDR/MASTER_PORT not set (run under llrun)");
  CHECK(llUniqueIdFromAddress(addr, port + portOffset, 0x5eed0000u + port, &id) == llSuccess, "id");
  return id;
}

llConfig_t testConfig() {
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = 128;
  c.hidden = 1024;
  c.numExperts = 2 * gWorld;
  c.timeoutMs = 30000;
  return c;
}

void oneCycle(int cycle, bool fromEnv) {
  llConfig_t config = testConfig();
  llComm_t comm = nullptr;
  if (fromEnv)
    CHECK(llCommInitFromEnv(&comm, &config) == llSuccess, "llCommInitFromEnv");
  else
    CHECK(llCommInitRank(&comm, gWorld, directId(1 + cycle), gRank, &config) == llSuccess, "llCommInitRank");
  int n = -1, r = -1;
  CHECK(llCommCount(comm, &n) == llSuccess && n == gWorld, "llCommCount = %d", n);
  CHECK(llCommUserRank(comm, &r) == llSuccess && r == gRank, "llCommUserRank = %d", r);
  llRouteCheckResult res{};
  CHECK(llRouteCheck(comm, (uint32_t)cycle, &res) == llSuccess, "route check kernels");
  CHECK(res.missingSignals == 0, "cycle %d: %u peers never signalled", cycle, res.missingSignals);
  CHECK(res.wrongWords == 0, "cycle %d: %llu words wrong", cycle, res.wrongWords);
  llResult_t asyncErr = llInternalError;
  CHECK(llCommGetAsyncError(comm, &asyncErr) == llSuccess && asyncErr == llSuccess, "async error %d", asyncErr);
  CHECK(llCommDestroy(comm) == llSuccess, "llCommDestroy");
}

int runCycles() {
  llBootstrap* control = nullptr;  // keeps ranks in step for the memory readings (free memory is per GPU)
  CHECK(llBootstrapTcpCreate(directId(0), gRank, gWorld, 60000, &control) == llSuccess, "control bootstrap");
  size_t coldFree = freeGpuBytes();
  oneCycle(0, getenv("LLEP_UNIQUE_ID") != nullptr);  // warm-up: first kernel loads, IPC driver state
  CHECK(control->barrier() == llSuccess, "barrier");
  size_t startFree = freeGpuBytes();
  int startFds = openFds();
  for (int cycle = 1; cycle <= 3; cycle++) {
    oneCycle(cycle, false);
    CHECK(control->barrier() == llSuccess, "barrier");
    size_t nowFree = freeGpuBytes();
    int nowFds = openFds();
    if (gRank == 0)
      printf("cycle %d: R=%d routes ok, GPU free %.1f MiB (start %.1f, before warm-up %.1f), fds %d (start %d)\n",
             cycle, gWorld, nowFree / 1048576.0, startFree / 1048576.0, coldFree / 1048576.0, nowFds, startFds);
    CHECK(nowFree == startFree, "cycle %d: GPU free memory %zu != %zu at start", cycle, nowFree, startFree);
    CHECK(nowFds == startFds, "cycle %d: %d open fds != %d at start", cycle, nowFds, startFds);
    CHECK(control->barrier() == llSuccess, "barrier");
  }
  delete control;
  printf("rank %d: PASS (R=%d, 3 cycles after warm-up)\n", gRank, gWorld);
  return 0;
}

int runDisagree() {
  CHECK(gWorld >= 2, "needs at least 2 ranks");
  llConfig_t config = testConfig();
  if (gRank == 1) config.hidden = 2048;
  llComm_t comm = nullptr;
  llResult_t res = llCommInitRank(&comm, gWorld, directId(1), gRank, &config);
  CHECK(res == llInvalidUsage, "expected llInvalidUsage, got %d", res);
  CHECK(comm == nullptr, "comm set on failure");
  CHECK(strstr(llGetLastError(nullptr), "config.hidden differs between rank 0 and rank 1") != nullptr, "message");
  printf("rank %d: PASS (refused: %s)\n", gRank, llGetLastError(nullptr));
  return 0;
}

// Run without LLEP_IB_DEVICE=model: with rdma-core and no NIC (or no rdma-core), ibgda is unusable.
int runTransports() {
  CHECK(gWorld >= 2, "needs at least 2 ranks");
  CHECK(getenv("LLEP_IB_DEVICE") == nullptr, "run without LLEP_IB_DEVICE");
  llConfig_t config = testConfig();
  config.transports = LL_TRANSPORT_IBGDA;
  llComm_t comm = nullptr;
  llResult_t res = llCommInitRank(&comm, gWorld, directId(1), gRank, &config);
  std::string refused = llGetLastError(nullptr);
  CHECK(res == llSystemError, "ibgda without a NIC: expected llSystemError, got %d", res);
  CHECK(comm == nullptr, "comm set on failure");
  CHECK(refused.find("ibgda") != std::string::npos &&
            (refused.find("no RDMA device") != std::string::npos || refused.find("rdma-core not found") != std::string::npos),
        "message does not say why: %s", refused.c_str());
  config.transports = LL_TRANSPORT_ALL;
  CHECK(llCommInitRank(&comm, gWorld, directId(2), gRank, &config) == llSuccess, "auto after the refusal");
  for (const llRoute& r : comm->routes) CHECK(r.type == LL_ROUTE_P2P, "auto: rank %u not routed through p2p", r.peer);
  llRouteCheckResult check{};
  CHECK(llRouteCheck(comm, 1, &check) == llSuccess && check.wrongWords == 0 && check.missingSignals == 0,
        "auto: routes do not work");
  CHECK(llCommDestroy(comm) == llSuccess, "llCommDestroy");
  printf("rank %d: PASS (ibgda refused: %s; auto: every peer p2p)\n", gRank, refused.c_str());
  return 0;
}

// Over ibgda with the software device: rank 0 corrupts the rkey of its route to rank 1, so its dispatch's
// RDMA writes hit a key rank 1 never issued. Expected on rank 0: the QP's error CQE becomes the async error
// llRemoteError, and the message names the peer and the syndrome (remote access error). Rank 1 then never
// gets rank 0's signals: it reports either an error on its own QP to rank 0 (named) or a timeout. Nothing
// hangs, and both ranks still destroy the communicator together.
int runIbgdaError() {
  CHECK(gWorld == 2, "needs 2 ranks");
  CHECK(getenv("LLEP_IB_DEVICE") != nullptr, "run with LLEP_IB_DEVICE=model");
  llConfig_t config = testConfig();
  config.transports = LL_TRANSPORT_IBGDA;
  config.maxTokensPerRank = 8;
  config.timeoutMs = 5000;
  llComm_t comm = nullptr;
  CHECK(llCommInitRank(&comm, gWorld, directId(1), gRank, &config) == llSuccess, "init over ibgda");
  int peer = 1 - gRank;
  CHECK(comm->routes[peer].type == LL_ROUTE_IBGDA, "route to rank %d is not ibgda", peer);
  if (gRank == 0) {
    llRoute bad = comm->routes[peer];
    bad.rkey ^= 0x5a5a00;
    CHECK(cudaMemcpy(comm->devRoutes + peer, &bad, sizeof(bad), cudaMemcpyHostToDevice) == cudaSuccess, "patch");
  }

  const int T = 4, H = config.hidden, El = config.numExperts / gWorld, rows = gWorld * config.maxTokensPerRank;
  std::vector<int64_t> topk(T, (int64_t)peer * El);  // every token to the peer's first expert
  void *x, *recvX, *topkDev, *recvCount, *srcInfo, *layout;
  CHECK(cudaMalloc(&x, (size_t)T * H * 2) == cudaSuccess && cudaMemset(x, 0, (size_t)T * H * 2) == cudaSuccess, "x");
  CHECK(cudaMalloc(&recvX, (size_t)El * rows * H * 2) == cudaSuccess, "recvX");
  CHECK(cudaMalloc(&topkDev, T * sizeof(int64_t)) == cudaSuccess, "topk");
  CHECK(cudaMemcpy(topkDev, topk.data(), T * sizeof(int64_t), cudaMemcpyHostToDevice) == cudaSuccess, "topk");
  CHECK(cudaMalloc(&recvCount, El * sizeof(int32_t)) == cudaSuccess, "recvCount");
  CHECK(cudaMalloc(&srcInfo, (size_t)El * rows * sizeof(int32_t)) == cudaSuccess, "srcInfo");
  CHECK(cudaMalloc(&layout, (size_t)El * gWorld * sizeof(int64_t)) == cudaSuccess, "layout");
  llDispatchArgs_t a = LL_DISPATCH_ARGS_INITIALIZER;
  a.x = x;
  a.topkIdx = static_cast<int64_t*>(topkDev);
  a.numTokens = T;
  a.topk = 1;
  a.recvX = recvX;
  a.recvCount = static_cast<int32_t*>(recvCount);
  a.srcInfo = static_cast<int32_t*>(srcInfo);
  a.layoutRange = static_cast<int64_t*>(layout);
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  CHECK(llDispatch(comm, &a, &handle, nullptr) == llSuccess, "llDispatch");
  CHECK(cudaDeviceSynchronize() == cudaSuccess, "the kernel ends");
  llResult_t asyncErr = llSuccess;
  CHECK(llCommGetAsyncError(comm, &asyncErr) == llSuccess, "llCommGetAsyncError");
  std::string message = llGetLastError(comm);
  bool namesPeer = message.find("to rank " + std::to_string(peer)) != std::string::npos;
  if (gRank == 0) {
    CHECK(asyncErr == llRemoteError, "async error %d, expected llRemoteError", asyncErr);
    CHECK(namesPeer && message.find("remote access") != std::string::npos,
          "message does not name the peer and the syndrome: %s", message.c_str());
  } else {
    CHECK((asyncErr == llRemoteError && namesPeer) || asyncErr == llTimeout, "async error %d: %s", asyncErr,
          message.c_str());
  }
  for (void* p : {x, recvX, topkDev, recvCount, srcInfo, layout}) CHECK(cudaFree(p) == cudaSuccess, "free");
  CHECK(llCommDestroy(comm) == llSuccess, "llCommDestroy");
  printf("rank %d: PASS (%s)\n", gRank, message.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  gRank = envInt("RANK", 0);
  gWorld = envInt("WORLD_SIZE", 1);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    printf("SKIP: no GPU\n");
    return 77;
  }
  CHECK(cudaSetDevice(envInt("LOCAL_RANK", gRank) % count) == cudaSuccess, "cudaSetDevice");
  CHECK(cudaFree(nullptr) == cudaSuccess, "context");
  std::string mode = argc > 1 ? argv[1] : "cycles";
  if (mode == "cycles") return runCycles();
  if (mode == "disagree") return runDisagree();
  if (mode == "transports") return runTransports();
  if (mode == "ibgda_error") return runIbgdaError();
  fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
