// GPU test of the device posting path (ibgda_qp.h in CUDA kernels) against the software mlx5 device over GPU
// memory: two ranks connect with llIbgdaConnect (rings, doorbell records and CQs in GPU memory), upload their
// QPs with llIbgdaUploadQps, and a kernel of many threads posts RDMA writes, 4- and 8-byte inline writes,
// fetch-adds and masked fetch-adds to the peer, then quiets. Each rank then checks every byte of its buffer,
// the atomics' totals and old values, and that the send queue wrapped. A write with a wrong rkey must make
// the kernel's quiet return REMOTE_ACCESS_ERR and leave the target untouched: rank 0 sends it to rank 1 (over
// the model's socket wire), rank 1 to itself through its loopback QP (the in-process path). Not both over the
// one QP pair: its QPs carry both directions, and a QP in error answers nothing.
//
//   llrun -np 2 test_ibgda_device
// Exit 77 where there is no GPU.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/unique_id.h"
#include "test/gpu/ibgda_device_kernels.h"
#include "transport/ibgda/device_qps.h"
#include "transport/ibgda/model/provider.h"
#include "transport/ibgda/setup.h"

using namespace ibgdatest;

namespace {

constexpr int kBootstrapTimeoutMs = 60000;
constexpr uint32_t kLogSqBbs = 6;                   // 64 WQEBBs: the traffic wraps the ring dozens of times
// A run takes about a second with a GPU per rank, 10 to 20 with both ranks on one GPU, whose two contexts
// take turns: the model's copies for one rank wait while the other's kernel has the GPU.
constexpr uint64_t kKernelTimeoutNs = 90000000000;  // the kernel's own bound on any wait
constexpr double kHostWaitSeconds = 120;            // the host's bound, should the kernel's fail
constexpr uint32_t kWrongRkeyBits = 0x40000000u;    // flips a key into one the model never hands out

int gRank = -1;

[[noreturn]] void fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "rank %d: FAIL %s\n", gRank, msg);
  exit(1);
}

#define CHECK(cond, ...)            \
  do {                              \
    if (!(cond)) fail(__VA_ARGS__); \
  } while (0)

#define CUDA_OK(call)                                                                           \
  do {                                                                                          \
    cudaError_t err_ = (call);                                                                  \
    if (err_ != cudaSuccess) fail("%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
  } while (0)

#define LL_OK(call)                                                                               \
  do {                                                                                            \
    llResult_t res_ = (call);                                                                     \
    if (res_ != llSuccess) fail("%s:%d: %s: %s", __FILE__, __LINE__, #call, llGetLastError(nullptr)); \
  } while (0)

int envInt(const char* name, int deflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : deflt;
}

// ---- what each rank's buffer must hold -------------------------------------------------------------

uint64_t load64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v;
  memcpy(&v, b.data() + at, sizeof(v));
  return v;
}
uint32_t load32(const std::vector<uint8_t>& b, size_t at) {
  uint32_t v;
  memcpy(&v, b.data() + at, sizeof(v));
  return v;
}
template <typename T>
void store(std::vector<uint8_t>& b, size_t at, T v) {
  memcpy(b.data() + at, &v, sizeof(v));
}

// Before any traffic: poison, this rank's source bytes, the atomics' start values.
std::vector<uint8_t> initialImage(int rank) {
  std::vector<uint8_t> b(kBufferBytes, kPoison);
  for (int t = 0; t < kThreads; t++)
    for (int k = 0; k < kWritesPerThread; k++)
      for (size_t i = 0; i < kSlotBytes; i++) b[kSource + slot(t, k) + i] = sourceByte(rank, t, k, i);
  store<uint64_t>(b, kFetchAddWord, 0);
  store<uint32_t>(b, kMasked32Word, kMasked32Start);
  store<uint64_t>(b, kMasked64Word, kMasked64Start);
  return b;
}

// The old values the masked fetch-adds see, in the order they run: the start value, then each sum.
template <typename T, typename Add>
std::vector<T> maskedSequence(T start, int n, Add add) {
  std::vector<T> seq;
  for (T v = start; (int)seq.size() < n; v = add(v)) seq.push_back(v);
  return seq;
}

std::vector<uint32_t> masked32Olds() {
  return maskedSequence<uint32_t>(kMasked32Start, kThreads / 2,
                                  [](uint32_t v) { return llMlx5MaskedAdd32(v, kMasked32Add, kMasked32Boundary); });
}
std::vector<uint64_t> masked64Olds() {
  return maskedSequence<uint64_t>(kMasked64Start, kThreads / 2,
                                  [](uint64_t v) { return llMlx5MaskedAdd64(v, kMasked64Add, kMasked64Boundary); });
}

// After the peer's traffic: its writes in kInbound and kInline, its atomics' totals in the counter words.
// kResults (old values, in an order the run decides) is checked apart and taken from `got`.
std::vector<uint8_t> afterTraffic(std::vector<uint8_t> b, int peer, const std::vector<uint8_t>& got) {
  for (int t = 0; t < kThreads; t++) {
    for (int k = 0; k < kWritesPerThread; k++)
      for (size_t i = 0; i < writeLen(t, k); i++) b[kInbound + slot(t, k) + i] = sourceByte(peer, t, k, i);
    store<uint32_t>(b, kInline + 16 * (size_t)t, inline4(peer, t));
    store<uint64_t>(b, kInline + 16 * (size_t)t + 8, inline8(peer, t));
  }
  store<uint64_t>(b, kFetchAddWord, kThreads * kFetchAdd);
  store<uint32_t>(b, kMasked32Word, llMlx5MaskedAdd32(masked32Olds().back(), kMasked32Add, kMasked32Boundary));
  store<uint64_t>(b, kMasked64Word, llMlx5MaskedAdd64(masked64Olds().back(), kMasked64Add, kMasked64Boundary));
  std::copy(got.begin() + kResults, got.begin() + kUntouched, b.begin() + kResults);
  return b;
}

const char* regionOf(size_t at) {
  if (at < kSource) return "inbound RDMA writes";
  if (at < kInline) return "source";
  if (at < kCounters) return "inline writes";
  if (at < kResults) return "atomic counters";
  if (at < kUntouched) return "atomic results";
  return "untouched";
}

void expectImage(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, const char* when) {
  auto diff = std::mismatch(got.begin(), got.end(), want.begin());
  if (diff.first == got.end()) return;
  const size_t at = diff.first - got.begin();
  size_t count = 0;
  for (size_t i = at; i < got.size(); i++) count += got[i] != want[i];
  fail("%s: %zu bytes wrong, the first at offset %zu (%s): 0x%02x, expected 0x%02x", when, count, at,
       regionOf(at), got[at], want[at]);
}

// Every thread's old value, sorted, against the values the word held in turn.
template <typename T>
void expectOlds(std::vector<T> got, const std::vector<T>& want, const char* what) {
  std::sort(got.begin(), got.end());
  CHECK(std::adjacent_find(got.begin(), got.end()) == got.end(), "%s: two threads saw the same old value", what);
  for (size_t i = 0; i < got.size(); i++)
    CHECK(got[i] == want[i], "%s: old value #%zu is 0x%llx, expected 0x%llx", what, i, (unsigned long long)got[i],
          (unsigned long long)want[i]);
}

void expectResults(const std::vector<uint8_t>& got) {
  std::vector<uint64_t> fetchAdd, masked64, fetchAddWant;
  std::vector<uint32_t> masked32;
  for (int t = 0; t < kThreads; t++) {
    const size_t at = kResults + 16 * (size_t)t;
    fetchAdd.push_back(load64(got, at));
    fetchAddWant.push_back(t * kFetchAdd);
    if (t % 2 == 0) {
      masked32.push_back(load32(got, at + 8));
      CHECK(load32(got, at + 12) == 0x01010101u * kPoison, "thread %d: the 32-bit masked result spilled over",
            t);
    } else {
      masked64.push_back(load64(got, at + 8));
    }
  }
  expectOlds(fetchAdd, fetchAddWant, "fetch-add");
  expectOlds(masked32, masked32Olds(), "masked fetch-add 32");
  expectOlds(masked64, masked64Olds(), "masked fetch-add 64");
}

// ---- one rank --------------------------------------------------------------------------------------

struct Rank {
  int rank = -1, peer = -1;
  llBootstrap* bs = nullptr;
  std::string jobDir;
  const llVerbs* v = nullptr;
  uint8_t* buffer = nullptr;  // GPU memory, kBufferBytes, registered
  llIbgdaEndpoints ep;
  llIbgdaDeviceQps dev;
  cudaStream_t stream = nullptr;
  std::vector<uint8_t> want;  // what the buffer must hold now
};

// Rank 0 makes a fresh directory for the model's sockets and tells the other; both point the model at it
// before the first verbs call.
void useModel(Rank& r) {
  char dir[64] = "";
  if (r.rank == 0) {
    snprintf(dir, sizeof(dir), "/tmp/llep-ibgda-device-XXXXXX");
    CHECK(mkdtemp(dir) != nullptr, "mkdtemp: %s", strerror(errno));
  }
  LL_OK(r.bs->broadcast(dir, sizeof(dir), 0));
  r.jobDir = dir;
  CHECK(setenv("LLEP_IB_DEVICE", "model", 1) == 0 && setenv("LLEP_MODEL_JOB", dir, 1) == 0 &&
            unsetenv("LLEP_IB_HCA") == 0,
        "setenv");
  LL_OK(llVerbsLoad(&r.v));
  CHECK(strcmp(r.v->provider, "model") == 0, "verbs table is %s, not the model", r.v->provider);
}

std::vector<uint8_t> download(const Rank& r) {
  std::vector<uint8_t> b(kBufferBytes);
  CUDA_OK(cudaMemcpy(b.data(), r.buffer, kBufferBytes, cudaMemcpyDeviceToHost));
  return b;
}

void connect(Rank& r) {
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&r.buffer), kBufferBytes));
  r.want = initialImage(r.rank);
  CUDA_OK(cudaMemcpy(r.buffer, r.want.data(), kBufferBytes, cudaMemcpyHostToDevice));
  llIbgdaSetupOptions options;
  options.logSqBbs = kLogSqBbs;
  options.logCqSize = kLogSqBbs;
  options.rings = llIbgdaGpuRings();
  LL_OK(llIbgdaConnect(r.v, r.bs, r.buffer, kBufferBytes, &options, &r.ep));
  LL_OK(llIbgdaUploadQps(r.ep, &r.dev));
  CHECK(r.dev.count == 2, "%d QPs uploaded", r.dev.count);
  CUDA_OK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking));
}

// Posts through this rank's QP to `target`.
TrafficArgs trafficArgs(const Rank& r, int target) {
  TrafficArgs a{};
  a.qp = r.dev.qps + target;
  a.local = (uint64_t)(uintptr_t)r.buffer;
  a.lkey = r.ep.mr->lkey;
  a.remote = r.ep.peers[target].base;
  a.rkey = r.ep.peers[target].rkey;
  a.rank = r.rank;
  return a;
}

LlIbgdaQp deviceQp(const Rank& r, int target) {
  LlIbgdaQp q;
  CUDA_OK(cudaMemcpy(&q, r.dev.qps + target, sizeof(q), cudaMemcpyDeviceToHost));
  return q;
}

std::string qpState(const Rank& r, int target) {
  const LlIbgdaQp q = deviceQp(r, target);
  char s[256];
  snprintf(s, sizeof(s), "reserved %llu, published %llu, completed %llu WQEBBs, cq consumer %u, syndrome 0x%x",
           (unsigned long long)q.resvHead, (unsigned long long)q.readyHead, (unsigned long long)q.consumed,
           q.cqConsumer, q.errSyndrome);
  return s;
}

// Waits (bounded) for the stream's kernels, which post to `target`, then fails if any thread gave up waiting
// inside ibgda_qp.h.
void finish(const Rank& r, int target, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(kHostWaitSeconds);
  cudaError_t err;
  while ((err = cudaStreamQuery(r.stream)) == cudaErrorNotReady) {
    CHECK(std::chrono::steady_clock::now() < deadline, "%s: kernel still running after %.0f s (%s)", what,
          kHostWaitSeconds, qpState(r, target).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CUDA_OK(err);
  unsigned gaveUp = 0;
  CUDA_OK(spinTimeouts(&gaveUp));
  const std::string memory = llnic::modelMemoryError(r.ep.context);
  CHECK(gaveUp == 0, "%s: %u threads gave up waiting after %.3g s (%s)%s%s", what, gaveUp, kKernelTimeoutNs / 1e9,
        qpState(r, target).c_str(), memory.empty() ? "" : "; model: ", memory.c_str());
  CHECK(memory.empty(), "%s: the model failed to access GPU memory: %s", what, memory.c_str());
}

// The model executed every WQE posted to the QP to `target`, and `failed` of them failed.
void expectModelRan(const Rank& r, int target, uint64_t wqeBbs, uint64_t failed) {
  llnic::Qp* qp = llnic::modelNic(r.ep.context)->qp(r.ep.qp[target].qpn);
  CHECK(qp != nullptr, "the model has no QP 0x%x", r.ep.qp[target].qpn);
  const llnic::QpStats stats = qp->stats();
  // Every WQE posted here (inline writes of 4 and 8 bytes included) fits one WQEBB.
  CHECK(stats.executed + stats.failed == wqeBbs && stats.failed == failed,
        "the model executed %llu WQEs and failed %llu; the GPU posted %llu, %llu of them bad",
        (unsigned long long)stats.executed, (unsigned long long)stats.failed, (unsigned long long)wqeBbs,
        (unsigned long long)failed);
}

void runTraffic(Rank& r) {
  uint32_t* syndromes = nullptr;
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&syndromes), kThreads * sizeof(uint32_t)));
  CUDA_OK(cudaMemset(syndromes, 0xff, kThreads * sizeof(uint32_t)));
  CUDA_OK(launchTraffic(trafficArgs(r, r.peer), syndromes, kKernelTimeoutNs, r.stream));
  finish(r, r.peer, "traffic");
  std::vector<uint32_t> quiet(kThreads);
  CUDA_OK(cudaMemcpy(quiet.data(), syndromes, kThreads * sizeof(uint32_t), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(syndromes));
  for (int t = 0; t < kThreads; t++)
    CHECK(quiet[t] == 0, "traffic: thread %d's quiet returned syndrome 0x%x (%s)", t, quiet[t],
          llIbgdaSyndromeName(quiet[t]));

  const LlIbgdaQp q = deviceQp(r, r.peer);
  const uint64_t ring = 1ull << kLogSqBbs;
  CHECK(q.consumed == q.resvHead && q.readyHead == q.resvHead, "traffic: WQEBBs left after every quiet: %s",
        qpState(r, r.peer).c_str());
  CHECK(q.resvHead >= 10 * ring, "traffic: %llu WQEBBs posted, fewer than 10 rings of %llu",
        (unsigned long long)q.resvHead, (unsigned long long)ring);
  expectModelRan(r, r.peer, q.resvHead, 0);

  LL_OK(r.bs->barrier());  // the peer's quiets returned: its data and atomics are here
  const std::vector<uint8_t> got = download(r);
  expectResults(got);
  r.want = afterTraffic(r.want, r.peer, got);
  expectImage(got, r.want, "traffic");
  printf("rank %d: traffic ok: %d threads, %llu WQEBBs through a ring of %llu (%.0f times round)\n", r.rank,
         kThreads, (unsigned long long)q.resvHead, (unsigned long long)ring, (double)q.resvHead / ring);
}

void runBadRkey(Rank& r) {
  const int target = r.rank == 0 ? r.peer : r.rank;
  BadWriteResult* result = nullptr;
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&result), sizeof(*result)));
  CUDA_OK(cudaMemset(result, 0, sizeof(*result)));
  const uint64_t before = deviceQp(r, target).resvHead;
  CUDA_OK(launchBadRkeyWrite(trafficArgs(r, target), r.ep.peers[target].rkey ^ kWrongRkeyBits, result,
                             kKernelTimeoutNs, r.stream));
  finish(r, target, "wrong rkey");
  BadWriteResult res;
  CUDA_OK(cudaMemcpy(&res, result, sizeof(res), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaFree(result));
  CHECK(res.finished == 1, "wrong rkey: the posting thread did not finish");
  CHECK(res.syndrome == kLlMlx5SyndRemoteAccessErr, "wrong rkey: quiet returned syndrome 0x%x (%s), expected 0x%x",
        res.syndrome, llIbgdaSyndromeName(res.syndrome), kLlMlx5SyndRemoteAccessErr);
  CHECK(res.errWqeCounter == res.postedCounter, "wrong rkey: the error names WQE %u, the write was %u",
        res.errWqeCounter, res.postedCounter);
  // The write (one WQEBB) failed, and so did (flushed) the NOP that quiet adds when the write asked for no CQE.
  const uint64_t after = deviceQp(r, target).resvHead;
  expectModelRan(r, target, after, after - before);

  LL_OK(r.bs->barrier());  // the peer's bad write has been answered
  expectImage(download(r), r.want, "wrong rkey");
  printf("rank %d: wrong rkey to rank %d ok: %s\n", r.rank, target, llIbgdaSyndromeName(res.syndrome));
}

// In reverse order of setup; every rank is quiet before any disconnects.
void tearDown(Rank& r) {
  CUDA_OK(cudaStreamDestroy(r.stream));
  LL_OK(llIbgdaFreeQps(&r.dev));
  LL_OK(r.bs->barrier());
  LL_OK(llIbgdaDisconnect(&r.ep));
  CUDA_OK(cudaFree(r.buffer));
  LL_OK(r.bs->barrier());  // every rank's socket is gone
  if (r.rank == 0) CHECK(rmdir(r.jobDir.c_str()) == 0, "rmdir %s: %s", r.jobDir.c_str(), strerror(errno));
  delete r.bs;
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  gRank = envInt("RANK", 0);
  int gpus = 0;
  const cudaError_t err = cudaGetDeviceCount(&gpus);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver || (err == cudaSuccess && gpus == 0)) {
    printf("SKIP: no GPU\n");
    return 77;
  }
  CUDA_OK(err);
  CUDA_OK(cudaSetDevice(envInt("LOCAL_RANK", gRank) % gpus));
  CUDA_OK(cudaFree(nullptr));  // the context, before the model's threads use it

  Rank r;
  llUniqueId id;
  int nranks = 0;
  LL_OK(llUniqueIdFromEnv(&id, &r.rank, &nranks));
  CHECK(nranks == 2, "needs 2 ranks, got %d (run as llrun -np 2 test_ibgda_device)", nranks);
  gRank = r.rank;
  r.peer = 1 - r.rank;
  LL_OK(llBootstrapTcpCreate(id, r.rank, nranks, kBootstrapTimeoutMs, &r.bs));
  useModel(r);
  connect(r);
  runTraffic(r);
  runBadRkey(r);
  tearDown(r);
  printf("rank %d: PASS\n", gRank);
  return 0;
}
