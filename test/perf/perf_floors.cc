#include "test/perf/perf_floors.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "test/perf/perf_common.h"
#include "test/perf/perf_kernels.h"

namespace {

constexpr size_t kCopyBytes = size_t(1) << 30;
constexpr size_t kPeerBytes = size_t(256) << 20;
constexpr size_t kBusyBytes = size_t(64) << 20;  // a memset long enough (~20 us) to enqueue behind
constexpr int kBandwidthReps = 10, kLatencyReps = 200, kWarmup = 5;
constexpr int kRoundTrips = 2000, kRoundTripSkip = 100;  // the peer's kernel may start late
constexpr uint64_t kRoundTripTimeoutNs = 10'000'000'000ull;
constexpr int kHandleTimeoutMs = 60000;

struct Events {
  cudaEvent_t begin = nullptr, end = nullptr;
  Events() {
    PERF_CUDA(cudaEventCreate(&begin));
    PERF_CUDA(cudaEventCreate(&end));
  }
  ~Events() {
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
  }
  double us() const {
    float ms = 0;
    PERF_CUDA(cudaEventElapsedTime(&ms, begin, end));
    return ms * 1e3;
  }
};

// Median event time of enqueue() over kReps runs after kWarmup; `busy` (or nothing) is enqueued
// before the first event of each run.
template <typename Busy, typename Enqueue>
double medianEventUs(cudaStream_t s, int reps, Busy busy, Enqueue enqueue) {
  Events ev;
  std::vector<double> us;
  for (int i = 0; i < kWarmup + reps; i++) {
    busy();
    PERF_CUDA(cudaEventRecord(ev.begin, s));
    enqueue();
    PERF_CUDA(cudaEventRecord(ev.end, s));
    PERF_CUDA(cudaStreamSynchronize(s));
    if (i >= kWarmup) us.push_back(ev.us());
  }
  return llPerfStats(us).median;
}

double hbmCopyGBps(cudaStream_t s) {
  void *src = nullptr, *dst = nullptr;
  PERF_CUDA(cudaMalloc(&src, kCopyBytes));
  PERF_CUDA(cudaMalloc(&dst, kCopyBytes));
  PERF_CUDA(cudaMemsetAsync(src, 1, kCopyBytes, s));
  PERF_CUDA(cudaMemsetAsync(dst, 2, kCopyBytes, s));
  auto copy = [&] { PERF_CUDA(cudaMemcpyAsync(dst, src, kCopyBytes, cudaMemcpyDeviceToDevice, s)); };
  double us = medianEventUs(s, kBandwidthReps, [] {}, copy);
  PERF_CUDA(cudaFree(src));
  PERF_CUDA(cudaFree(dst));
  return 2.0 * kCopyBytes / (us * 1e3);  // read + written; bytes/us / 1e3 = GB/s
}

// Peer access is enabled only for the copy, and left as it was found.
double peerCopyGBps(const llPerfRanks& r, cudaStream_t s, std::string* note) {
  if (r.gpus < 2) {
    *note = "n/a: one GPU";
    return 0;
  }
  int a = r.device, b = (a + 1) % r.gpus, can = 0;
  PERF_CUDA(cudaDeviceCanAccessPeer(&can, a, b));
  std::string pair = "GPU " + std::to_string(a) + " -> GPU " + std::to_string(b);
  if (!can) {
    *note = "n/a: " + pair + " has no peer access";
    return 0;
  }
  cudaError_t err = cudaDeviceEnablePeerAccess(b, 0);
  bool enabledHere = err == cudaSuccess;
  if (err == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
  else PERF_CUDA(err);
  void *src = nullptr, *dst = nullptr;
  PERF_CUDA(cudaMalloc(&src, kPeerBytes));
  PERF_CUDA(cudaSetDevice(b));
  PERF_CUDA(cudaMalloc(&dst, kPeerBytes));
  PERF_CUDA(cudaSetDevice(a));
  PERF_CUDA(cudaMemsetAsync(src, 1, kPeerBytes, s));
  double us = medianEventUs(s, kBandwidthReps, [] {},
                            [&] { PERF_CUDA(cudaMemcpyPeerAsync(dst, b, src, a, kPeerBytes, s)); });
  PERF_CUDA(cudaFree(src));
  PERF_CUDA(cudaSetDevice(b));
  PERF_CUDA(cudaFree(dst));
  PERF_CUDA(cudaSetDevice(a));
  if (enabledHere) PERF_CUDA(cudaDeviceDisablePeerAccess(b));
  *note = pair + ", cudaMemcpyPeerAsync of 256 MiB (copy engines; SM stores to several peers may go faster)";
  return kPeerBytes / (us * 1e3);
}

void emptyPair(cudaStream_t s) {
  PERF_CUDA(llPerfLaunchEmpty(s));
  PERF_CUDA(llPerfLaunchEmpty(s));
}

// The step loop's shape: idle stream, wall clock around events around the work and a synchronize.
void measureStep(cudaStream_t s, bool graph, llPerfFloors* f) {
  cudaGraphExec_t exec = nullptr;
  if (graph) {
    cudaGraph_t g = nullptr;
    PERF_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    emptyPair(s);
    PERF_CUDA(cudaStreamEndCapture(s, &g));
    PERF_CUDA(cudaGraphInstantiate(&exec, g, 0));
    PERF_CUDA(cudaGraphDestroy(g));
  }
  Events ev;
  std::vector<double> eventUs, hostUs;
  for (int i = 0; i < kWarmup + kLatencyReps; i++) {
    auto t0 = std::chrono::steady_clock::now();
    PERF_CUDA(cudaEventRecord(ev.begin, s));
    if (graph) PERF_CUDA(cudaGraphLaunch(exec, s));
    else emptyPair(s);
    PERF_CUDA(cudaEventRecord(ev.end, s));
    PERF_CUDA(cudaStreamSynchronize(s));
    auto t1 = std::chrono::steady_clock::now();
    if (i < kWarmup) continue;
    eventUs.push_back(ev.us());
    hostUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (exec) PERF_CUDA(cudaGraphExecDestroy(exec));
  f->stepUs = llPerfStats(eventUs).median;
  f->stepHostUs = llPerfStats(hostUs).median;
}

void measureLaunches(cudaStream_t s, bool graph, llPerfFloors* f) {
  void* busyBuf = nullptr;
  PERF_CUDA(cudaMalloc(&busyBuf, kBusyBytes));
  f->callUs = medianEventUs(s, kLatencyReps, [&] { PERF_CUDA(cudaMemsetAsync(busyBuf, 0, kBusyBytes, s)); },
                            [&] { PERF_CUDA(llPerfLaunchEmpty(s)); });
  PERF_CUDA(cudaFree(busyBuf));
  measureStep(s, graph, f);
}

// Ranks 0 and 1 map each other's flag through CUDA IPC; handles travel through files.
double roundTripUs(const llPerfRanks& r, cudaStream_t s, std::string* note) {
  uint64_t* own = nullptr;
  uint64_t* result = nullptr;
  PERF_CUDA(cudaMalloc(reinterpret_cast<void**>(&own), 256));
  PERF_CUDA(cudaMalloc(reinterpret_cast<void**>(&result), 3 * sizeof(uint64_t)));
  PERF_CUDA(cudaMemset(own, 0, 256));
  PERF_CUDA(cudaMemset(result, 0, 3 * sizeof(uint64_t)));
  cudaIpcMemHandle_t mine, theirs;
  PERF_CUDA(cudaIpcGetMemHandle(&mine, own));
  llPerfPublish(r, "flag", &mine, sizeof(mine));
  int peer = 1 - r.rank;
  if (!llPerfFetch(r, "flag", peer, &theirs, sizeof(theirs), kHandleTimeoutMs))
    llPerfDie("rank %d never published its round-trip flag", peer);
  void* peerFlag = nullptr;
  PERF_CUDA(cudaIpcOpenMemHandle(&peerFlag, theirs, cudaIpcMemLazyEnablePeerAccess));
  PERF_CUDA(llPerfLaunchPingPong(own, static_cast<uint64_t*>(peerFlag), kRoundTrips, kRoundTripSkip,
                                 r.rank == 0, kRoundTripTimeoutNs, result, s));
  PERF_CUDA(cudaStreamSynchronize(s));
  uint64_t res[3];
  PERF_CUDA(cudaMemcpy(res, result, sizeof(res), cudaMemcpyDeviceToHost));
  // Both kernels are done: neither side writes into the other's flag any more.
  PERF_CUDA(cudaIpcCloseMemHandle(peerFlag));
  PERF_CUDA(cudaFree(own));
  PERF_CUDA(cudaFree(result));
  llPerfUnpublish(r, "flag", peer);
  int g0 = llPerfGpuOf(r, 0), g1 = llPerfGpuOf(r, 1);
  std::string where = g0 == g1 ? "ranks 0 and 1 on GPU " + std::to_string(g0)
                               : "ranks 0 and 1 on GPUs " + std::to_string(g0) + " and " + std::to_string(g1);
  if (res[0] != 0) {
    *note = "n/a: timed out (" + where + "; ranks sharing a GPU run concurrently only under MPS)";
    return -1;
  }
  *note = where + ", one thread each, flags through CUDA IPC";
  return (res[2] - res[1]) / 1e3 / (kRoundTrips - kRoundTripSkip);
}

}  // namespace

llPerfFloors llPerfMeasureFloors(const llPerfRanks& r, bool graph, cudaStream_t s) {
  llPerfFloors f;
  if (r.world < 2)
    f.roundTripNote = "n/a: one rank";
  else if (!llPerfCanExchange(r))
    f.roundTripNote = "n/a: ranks 0 and 1 not known to share this host";
  else if (r.rank <= 1)
    f.roundTripUs = roundTripUs(r, s, &f.roundTripNote);
  if (r.rank != 0) return f;
  f.copyGBps = hbmCopyGBps(s);
  f.peerGBps = peerCopyGBps(r, s, &f.peerNote);
  measureLaunches(s, graph, &f);
  return f;
}

double llPerfFloorUs(const llPerfFloors& f, const llPerfRanks& r, const llPerfTraffic& t,
                     llPerfLatency kind) {
  double floor = r.ranksOnGpu * t.hbmBytes / (f.copyGBps * 1e3);
  if (f.peerGBps > 0) floor = std::max(floor, r.ranksOnGpu * t.linkBytes / (f.peerGBps * 1e3));
  double hop = f.roundTripUs > 0 ? f.roundTripUs : 0;
  double latency = kind == llPerfLatency::kCall ? f.callUs + hop / 2
                   : kind == llPerfLatency::kStep ? f.stepUs + hop
                                                  : f.stepHostUs + hop;
  return std::max(floor, latency);
}
