// GPU test of llDispatch / llCombine against the CPU reference (test/reference): every payload format,
// send-only hooks, zero-copy combine, ragged and empty ranks, -1 entries, duplicate and hot experts,
// statistics, CUDA graph replay, and refused arguments. Public API only.
//
//   llrun -np R test_dispatch_combine matrix [--quick] [--shapes 0,3,5] [--iters N] [--seed S]
//   llrun -np R test_dispatch_combine graph
//   llrun -np R test_dispatch_combine badinput
//   ... --nccl: every communicator made by llCommInitFromNccl on an NCCL communicator of the same ranks
//       (one rank per GPU; exit 77 where ranks would share a GPU or NCCL cannot be loaded)
//
// Every rank generates every rank's inputs from the same seed (the reference needs them all) and checks
// its own outputs. Every output is poisoned before each call, so rows the library never wrote fail.
// Exit 77 where there is no GPU.
#include <cuda_runtime_api.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llep.h"
#include "test/common/file_exchange.h"
#include "test/common/nccl_runtime.h"
#include "test/reference/reference.h"

namespace {

int gRank = 0, gWorld = 1;
int gBasePort = 0;  // MASTER_PORT from llrun: the k-th communicator meets on gBasePort + k
int gCommsMade = 0;
std::string gWhere = "setup";  // what runs now, for failure messages
const llTestNccl* gNccl = nullptr;  // set with --nccl: communicators come from NCCL ones
std::string gRunKey;                // names this run's files (the NCCL ids travel through them)
constexpr int kNcclIdTimeoutMs = 120000;

#define CHECK(cond, ...)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "rank %d: FAIL %s:%d [%s]: ", gRank, __FILE__, __LINE__, gWhere.c_str()); \
      fprintf(stderr, __VA_ARGS__);                                                             \
      fprintf(stderr, " (last error: %s)\n", llGetLastError(nullptr));                          \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

#define LL_OK(call)                                                                \
  do {                                                                             \
    llResult_t llRes_ = (call);                                                    \
    CHECK(llRes_ == llSuccess, "%s returned %s", #call, llGetErrorString(llRes_)); \
  } while (0)

#define CUDA_OK(call)                                                              \
  do {                                                                             \
    cudaError_t cudaErr_ = (call);                                                 \
    CHECK(cudaErr_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(cudaErr_)); \
  } while (0)

// Poison: 0xFF bytes are NaN in bf16, fp8 e4m3, fp32 and UE8M0; 0x7F bytes are no valid count or index.
constexpr uint8_t kPoisonNaN = 0xFF;
constexpr uint8_t kPoisonInt = 0x7F;
constexpr int32_t kPoisonInt32 = 0x7f7f7f7f;
constexpr uint16_t kBf16NaN = 0xFFFF;

constexpr int kSoakIters = 50;
constexpr int kGraphReplays = 100;
constexpr int kBadInputTimeoutMs = 10000;

int envInt(const char* name, int deflt) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : deflt;
}

std::string format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

// ------------------------------------------------------------------------------------------------
// Device memory

// One cudaMalloc'd array; uploads and fills are ordered on the given stream.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) { CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p_), bytes())); }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void fill(uint8_t byte, cudaStream_t s) { CUDA_OK(cudaMemsetAsync(p_, byte, bytes(), s)); }
  // Pageable source: the call returns once the bytes are staged, so `v` may go away right after.
  void upload(const std::vector<T>& v, cudaStream_t s) {
    CHECK(v.size() <= n_, "upload of %zu elements into %zu", v.size(), n_);
    if (!v.empty()) CUDA_OK(cudaMemcpyAsync(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  // Callers synchronise the stream first: the copy runs on the legacy stream, which does not wait for
  // a non-blocking one.
  std::vector<T> download() const {
    std::vector<T> v(n_);
    CUDA_OK(cudaMemcpy(v.data(), p_, bytes(), cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// ------------------------------------------------------------------------------------------------
// Shapes, modes, inputs

size_t localExperts(const llRefShape& s) { return static_cast<size_t>(llRefLocalExperts(s)); }
size_t rowsPerExpert(const llRefShape& s) { return static_cast<size_t>(llRefRowsPerExpert(s)); }
size_t scaleGroups(const llRefShape& s) { return static_cast<size_t>(llRefScaleGroups(s)); }
size_t ue8m0Words(const llRefShape& s) { return (scaleGroups(s) + 3) / 4; }

int payloadFlags(llRefPayload p) {
  switch (p) {
    case llRefPayload::kBf16: return 0;
    case llRefPayload::kFp8: return LL_FP8;
    case llRefPayload::kFp8RoundScale: return LL_FP8 | LL_ROUND_SCALE;
    case llRefPayload::kFp8Ue8m0: return LL_FP8 | LL_UE8M0;  // LL_UE8M0 implies LL_ROUND_SCALE
  }
  return 0;
}

const char* payloadName(llRefPayload p) {
  switch (p) {
    case llRefPayload::kBf16: return "bf16";
    case llRefPayload::kFp8: return "fp8";
    case llRefPayload::kFp8RoundScale: return "fp8+round";
    case llRefPayload::kFp8Ue8m0: return "fp8+ue8m0";
  }
  return "?";
}

bool isBf16(llRefPayload p) { return p == llRefPayload::kBf16; }

// Ragged T per rank and a fraction of -1 entries, distinct experts.
llRefGenOptions raggedOptions(double minusOne) {
  llRefGenOptions g;
  g.fractionMinusOne = minusOne;
  g.raggedT = true;
  return g;
}

// Drops a rank's tokens past T; the result stays valid (counts only shrink).
void truncateTokens(const llRefShape& sh, int T, llRefRankInput& in) {
  in.T = T;
  in.x.resize(static_cast<size_t>(T) * sh.H);
  in.topk.resize(static_cast<size_t>(T) * sh.K);
  in.weights.resize(static_cast<size_t>(T) * sh.K);
}

// ------------------------------------------------------------------------------------------------
// Communicator, buffers, statistics

// The NCCL communicator under each llep one made with --nccl, destroyed after it.
std::unordered_map<llComm_t, ncclComm_t> gNcclOf;

#define NCCL_OK(call)                                                                                   \
  do {                                                                                                  \
    ncclResult_t ncclRes_ = (call);                                                                     \
    CHECK(ncclRes_ == ncclSuccess, "%s: %s", #call, gNccl->getErrorString(ncclRes_));                   \
  } while (0)

// The k-th NCCL communicator of the run: rank 0's unique id reaches the others through a file.
ncclComm_t newNcclComm(int k) {
  ncclUniqueId id;
  std::string name = "ncclid" + std::to_string(k);
  if (gRank == 0) {
    NCCL_OK(gNccl->getUniqueId(&id));
    CHECK(llExchangePublish(gRunKey, name, 0, &id, sizeof(id)), "cannot publish the NCCL id");
  } else {
    CHECK(llExchangeFetch(gRunKey, name, 0, &id, sizeof(id), kNcclIdTimeoutMs), "no NCCL id from rank 0");
  }
  ncclComm_t nccl = nullptr;
  NCCL_OK(gNccl->commInitRank(&nccl, gWorld, id, gRank));
  if (gRank == 0) llExchangeUnpublish(gRunKey, name, 0);  // every rank has joined, so has read it
  return nccl;
}

// llrun's LLEP_UNIQUE_ID serves one communicator per run, and the library reads it once, so every
// communicator here meets torchrun-style instead: rank 0 listens on MASTER_PORT + k for the k-th
// (or, with --nccl, the k-th comes from an NCCL communicator).
llComm_t newComm(const llRefShape& sh, int timeoutMs) {
  int k = gCommsMade++;
  std::string port = std::to_string(gBasePort + k);
  CHECK(setenv("MASTER_PORT", port.c_str(), 1) == 0, "setenv MASTER_PORT");
  llConfig_t c = LL_CONFIG_INITIALIZER;
  c.maxTokensPerRank = sh.N;
  c.hidden = sh.H;
  c.numExperts = sh.E;
  c.maxTopk = LL_MAX_TOPK;
  if (timeoutMs > 0) c.timeoutMs = timeoutMs;
  llComm_t comm = nullptr;
  if (gNccl) {
    ncclComm_t nccl = newNcclComm(k);
    LL_OK(llCommInitFromNccl(&comm, nccl, &c));
    gNcclOf[comm] = nccl;
  } else {
    LL_OK(llCommInitFromEnv(&comm, &c));
  }
  int n = 0, r = -1;
  LL_OK(llCommCount(comm, &n));
  LL_OK(llCommUserRank(comm, &r));
  CHECK(n == gWorld && r == gRank, "communicator of %d ranks, rank %d", n, r);
  return comm;
}

void destroyComm(llComm_t comm) {
  LL_OK(llCommDestroy(comm));
  auto it = gNcclOf.find(comm);
  if (it == gNcclOf.end()) return;
  NCCL_OK(gNccl->commDestroy(it->second));
  gNcclOf.erase(it);
}

// The caller-owned buffers of one dispatch + combine.
struct Io {
  explicit Io(const llRefShape& s)
      : x(static_cast<size_t>(s.N) * s.H),
        topk(static_cast<size_t>(s.N) * s.K),
        weights(static_cast<size_t>(s.N) * s.K),
        recvX(localExperts(s) * rowsPerExpert(s) * s.H * sizeof(uint16_t)),  // bf16 size; fp8 uses half
        scales(localExperts(s) * scaleGroups(s) * rowsPerExpert(s)),         // UE8M0 words need fewer
        recvCount(localExperts(s)),
        srcInfo(localExperts(s) * rowsPerExpert(s)),
        layoutRange(localExperts(s) * s.R),
        y(localExperts(s) * rowsPerExpert(s) * s.H),
        out(static_cast<size_t>(s.N) * s.H) {}
  DeviceArray<uint16_t> x;
  DeviceArray<int64_t> topk;
  DeviceArray<float> weights;
  DeviceArray<uint8_t> recvX;
  DeviceArray<float> scales;
  DeviceArray<int32_t> recvCount, srcInfo;
  DeviceArray<int64_t> layoutRange;
  DeviceArray<uint16_t> y;  // expert outputs, combine's x unless zero-copy
  DeviceArray<uint16_t> out;
};

// The optional statistics, with what they must hold.
struct Stats {
  explicit Stats(const llRefShape& s)
      : recv(localExperts(s)),
        dispatchWait(s.R),
        combineWait(s.R),
        expectRecv(localExperts(s), 0),
        lastDispatchWait(s.R, 0),
        lastCombineWait(s.R, 0) {}
  DeviceArray<int32_t> recv;
  DeviceArray<int64_t> dispatchWait, combineWait;
  std::vector<int64_t> expectRecv, lastDispatchWait, lastCombineWait;
};

struct Session {
  Session(const llRefShape& sh, int timeoutMs) : shape(sh), comm(newComm(sh, timeoutMs)), io(sh), stats(sh) {
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stats.recv.fill(0, stream);
    stats.dispatchWait.fill(0, stream);
    stats.combineWait.fill(0, stream);
    CUDA_OK(cudaStreamSynchronize(stream));
  }
  ~Session() {
    destroyComm(comm);
    cudaStreamDestroy(stream);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  llRefShape shape;
  llComm_t comm;
  cudaStream_t stream = nullptr;
  Io io;
  Stats stats;
};

// ------------------------------------------------------------------------------------------------
// Calls and their reference

// One dispatch + combine as this rank sees it.
struct Call {
  std::vector<llRefRankInput> inputs;  // every rank's
  llRefPayload payload = llRefPayload::kBf16;
  llRefDispatchOut expected;  // llRefDispatch for this rank
  llRefDispatchOut received;  // what the GPU produced (rows past recvCount unused)
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  const llRefRankInput& mine() const { return inputs[gRank]; }
};

Call makeCall(const llRefShape& sh, std::vector<llRefRankInput> inputs, llRefPayload payload) {
  Call c;
  c.inputs = std::move(inputs);
  c.payload = payload;
  c.expected = llRefDispatch(sh, c.inputs, gRank, payload);
  return c;
}

// What an expert computes: its input scaled by a factor of its own, so a row reduced under the wrong
// expert's slot shows. One rounding to bf16, the same function on the GPU's and the reference's side.
std::vector<uint16_t> expertOutput(const std::vector<float>& value, int e) {
  double f = 1.0 + (e % 5) * 0.25;
  std::vector<uint16_t> y(value.size());
  for (size_t h = 0; h < value.size(); h++) y[h] = llRefDoubleToBf16(value[h] * f);
  return y;
}

// The value a received copy of token x holds, by the reference's own functions on a one-row output, so
// it is bit for bit what llRefDequantRow gives for the row on the receiving rank.
std::vector<float> receivedValue(int H, llRefPayload payload, const uint16_t* x) {
  llRefShape one{1, 1, 1, H, 1};
  llRefDispatchOut row;
  row.payload = payload;
  if (isBf16(payload)) {
    row.xBf16.assign(x, x + H);
    return llRefDequantRow(one, row, 0, 0);
  }
  std::vector<float> scales(scaleGroups(one));
  row.xFp8.resize(H);
  llRefQuantizeRow(x, H, payload != llRefPayload::kFp8, row.xFp8.data(), scales.data());
  if (payload == llRefPayload::kFp8Ue8m0) {
    row.scalesUe8m0.resize(ue8m0Words(one));
    llRefPackUe8m0(scales.data(), static_cast<int>(scales.size()), row.scalesUe8m0.data());
  } else {
    row.scales = scales;
  }
  return llRefDequantRow(one, row, 0, 0);
}

struct ExpectedCombine {
  std::vector<double> out;        // llRefCombine: sum of w * y in fp64, [T, H]
  std::vector<double> magnitude;  // sum of |w * y|, [T, H]: scales the fp32 accumulation error
};

// The reference combine over the expert outputs every rank computes. This rank's combine reads only
// the rows of its own tokens, so those are rebuilt here from its inputs (other ranks' rows never are).
ExpectedCombine referenceCombine(const llRefShape& sh, const Call& c) {
  llRefPlan plan = llRefMakePlan(sh, c.inputs);
  const llRefRankInput& in = c.mine();
  size_t H = sh.H;
  int64_t rows = llRefRowsPerExpert(sh);
  std::unordered_map<int64_t, std::vector<uint16_t>> y;  // key: global expert * R*N + row
  ExpectedCombine want;
  want.magnitude.assign(in.T * H, 0.0);
  for (int t = 0; t < in.T; t++) {
    std::vector<float> value;
    for (int k = 0; k < sh.K; k++) {
      size_t i = static_cast<size_t>(t) * sh.K + k;
      if (in.topk[i] < 0) continue;
      if (value.empty()) value = receivedValue(sh.H, c.payload, &in.x[t * H]);
      int e = static_cast<int>(in.topk[i]);
      std::vector<uint16_t>& yr = y[e * rows + plan.row[gRank][i]] = expertOutput(value, e);
      std::vector<double> yd = llRefBf16ToDouble(yr);
      for (size_t h = 0; h < H; h++) want.magnitude[t * H + h] += std::fabs(in.weights[i] * yd[h]);
    }
  }
  int El = llRefLocalExperts(sh);
  want.out = llRefCombine(sh, c.inputs, gRank, [&](int r, int le, int row) {
               return y.at(static_cast<int64_t>(r * El + le) * rows + row).data();
             }).out;
  return want;
}

// ------------------------------------------------------------------------------------------------
// Enqueueing

void poisonOutputs(Io& io, cudaStream_t s) {
  io.recvX.fill(kPoisonNaN, s);
  io.scales.fill(kPoisonNaN, s);
  io.recvCount.fill(kPoisonInt, s);
  io.srcInfo.fill(kPoisonInt, s);
  io.layoutRange.fill(kPoisonInt, s);
  io.out.fill(kPoisonNaN, s);
}

// Input rows past T are poisoned too: a kernel that reads them turns the output NaN or raises an
// async error.
void stageInputs(Io& io, const llRefRankInput& in, cudaStream_t s) {
  io.x.fill(kPoisonNaN, s);
  io.topk.fill(kPoisonInt, s);
  io.weights.fill(kPoisonNaN, s);
  io.x.upload(in.x, s);
  io.topk.upload(in.topk, s);
  io.weights.upload(in.weights, s);
  poisonOutputs(io, s);
}

llDispatchArgs_t dispatchArgs(Session& s, Io& io, int T, int flags, bool withStats, llHook_t* hook) {
  llDispatchArgs_t a = LL_DISPATCH_ARGS_INITIALIZER;
  a.flags = flags | (hook ? LL_SEND_ONLY : 0);
  a.x = io.x.get();
  a.topkIdx = io.topk.get();
  a.numTokens = T;
  a.topk = s.shape.K;
  a.recvX = io.recvX.get();
  a.recvScales = (flags & LL_FP8) ? io.scales.get() : nullptr;
  a.recvCount = io.recvCount.get();
  a.srcInfo = io.srcInfo.get();
  a.layoutRange = io.layoutRange.get();
  if (withStats) {
    a.cumulativeRecvStats = s.stats.recv.get();
    a.waitTimeStats = s.stats.dispatchWait.get();
  }
  a.hook = hook;
  return a;
}

llCombineArgs_t combineArgs(Session& s, Io& io, int T, const void* x, int flags, bool withStats,
                            llHook_t* hook) {
  llCombineArgs_t a = LL_COMBINE_ARGS_INITIALIZER;
  a.flags = flags | (hook ? LL_SEND_ONLY : 0);
  a.x = x;
  a.topkIdx = io.topk.get();
  a.topkWeights = io.weights.get();
  a.numTokens = T;
  a.topk = s.shape.K;
  a.out = io.out.get();
  if (withStats) a.waitTimeStats = s.stats.combineWait.get();
  a.hook = hook;
  return a;
}

// The handle describes this dispatch, as the header documents.
void checkHandle(const Session& s, const Io& io, const Call& c) {
  const llDispatchHandle_t& h = c.handle;
  CHECK(h.size == sizeof(llDispatchHandle_t) && h.magic == LL_ARGS_MAGIC, "handle size/magic not filled");
  CHECK(h.numTokens == c.mine().T, "handle.numTokens = %d, T = %d", h.numTokens, c.mine().T);
  CHECK(h.srcInfo == io.srcInfo.get() && h.layoutRange == io.layoutRange.get(),
        "handle.srcInfo/layoutRange are not the dispatch's arrays");
  CHECK(h.maxTokensPerRank == s.shape.N && h.hidden == s.shape.H && h.numExperts == s.shape.E,
        "handle shape N=%d H=%d E=%d", h.maxTokensPerRank, h.hidden, h.numExperts);
}

void enqueueDispatch(Session& s, Io& io, Call& c, bool withStats, llHook_t* hook) {
  stageInputs(io, c.mine(), s.stream);
  llDispatchArgs_t a = dispatchArgs(s, io, c.mine().T, payloadFlags(c.payload), withStats, hook);
  LL_OK(llDispatch(s.comm, &a, &c.handle, s.stream));
  checkHandle(s, io, c);
}

void enqueueCombine(Session& s, Io& io, const Call& c, const void* x, int flags, bool withStats,
                    llHook_t* hook) {
  llCombineArgs_t a = combineArgs(s, io, c.mine().T, x, flags, withStats, hook);
  LL_OK(llCombine(s.comm, &a, &c.handle, s.stream));
}

// Writes the expert outputs of dispatch output d into dst ([E_l, R*N, H] bf16) on the stream. Rows
// past recvCount are NaN: a combine that reads them fails.
void uploadExpertOutputs(Session& s, const llRefDispatchOut& d, void* dst) {
  const llRefShape& sh = s.shape;
  size_t H = sh.H, rows = rowsPerExpert(sh), El = localExperts(sh);
  CUDA_OK(cudaMemsetAsync(dst, kPoisonNaN, El * rows * H * sizeof(uint16_t), s.stream));
  for (size_t le = 0; le < El; le++) {
    int count = d.recvCount[le];
    if (count == 0) continue;
    std::vector<uint16_t> y(count * H);
    for (int row = 0; row < count; row++) {
      std::vector<uint16_t> yr =
          expertOutput(llRefDequantRow(sh, d, static_cast<int>(le), row), static_cast<int>(gRank * El + le));
      std::memcpy(&y[row * H], yr.data(), H * sizeof(uint16_t));
    }
    // Pageable source: returns once staged, so `y` may go away.
    CUDA_OK(cudaMemcpyAsync(static_cast<uint16_t*>(dst) + le * rows * H, y.data(),
                            y.size() * sizeof(uint16_t), cudaMemcpyHostToDevice, s.stream));
  }
}

// ------------------------------------------------------------------------------------------------
// Checks

// First index in [0, n) where got and want differ bitwise (so a NaN never matches), or n.
template <typename T>
size_t firstDiff(const T* got, const T* want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) return i;
  return n;
}

template <typename T>
void expectAll(const DeviceArray<T>& a, T value, const char* what) {
  std::vector<T> v = a.download();
  size_t i = 0;
  while (i < v.size() && std::memcmp(&v[i], &value, sizeof(T)) == 0) i++;
  CHECK(i == v.size(), "%s: element %zu was written", what, i);
}

void checkLayout(const llRefShape& sh, const Io& io, llRefDispatchOut& got, const llRefDispatchOut& want) {
  size_t El = localExperts(sh), rows = rowsPerExpert(sh);
  got.recvCount = io.recvCount.download();
  size_t i = firstDiff(got.recvCount.data(), want.recvCount.data(), El);
  CHECK(i == El, "recvCount[%zu] = %d, reference %d", i, got.recvCount[i], want.recvCount[i]);
  got.layoutRange = io.layoutRange.download();
  i = firstDiff(got.layoutRange.data(), want.layoutRange.data(), El * sh.R);
  CHECK(i == El * sh.R, "layoutRange[le=%zu][src=%zu] = 0x%llx, reference 0x%llx", i / sh.R, i % sh.R,
        (unsigned long long)got.layoutRange[i], (unsigned long long)want.layoutRange[i]);
  got.srcInfo = io.srcInfo.download();
  for (size_t le = 0; le < El; le++) {
    size_t at = le * rows, n = want.recvCount[le];
    i = firstDiff(&got.srcInfo[at], &want.srcInfo[at], n);
    CHECK(i == n, "srcInfo[le=%zu][row=%zu] = %d, reference %d", le, i, got.srcInfo[at + i],
          want.srcInfo[at + i]);
  }
}

// recvX rows [0, recvCount) of every local expert, into got's (full) layout.
void downloadRows(const llRefShape& sh, const Io& io, llRefDispatchOut& got) {
  size_t El = localExperts(sh), rows = rowsPerExpert(sh), H = sh.H;
  size_t rowBytes = H * (isBf16(got.payload) ? sizeof(uint16_t) : 1);
  uint8_t* dst = isBf16(got.payload) ? reinterpret_cast<uint8_t*>(got.xBf16.data()) : got.xFp8.data();
  for (size_t le = 0; le < El; le++) {
    size_t at = le * rows * rowBytes;
    CUDA_OK(cudaMemcpy(dst + at, io.recvX.get() + at, got.recvCount[le] * rowBytes, cudaMemcpyDeviceToHost));
  }
}

void checkRows(const llRefShape& sh, const llRefDispatchOut& got, const llRefDispatchOut& want) {
  size_t El = localExperts(sh), rows = rowsPerExpert(sh), H = sh.H;
  for (size_t le = 0; le < El; le++) {
    size_t at = le * rows * H, n = want.recvCount[le] * H, i;
    if (isBf16(got.payload)) {
      i = firstDiff(&got.xBf16[at], &want.xBf16[at], n);
      CHECK(i == n, "recvX[le=%zu][row=%zu][h=%zu] = bf16 0x%04x, reference 0x%04x", le, i / H, i % H,
            got.xBf16[at + i], want.xBf16[at + i]);
    } else {
      i = firstDiff(&got.xFp8[at], &want.xFp8[at], n);
      CHECK(i == n, "recvX[le=%zu][row=%zu][h=%zu] = fp8 0x%02x, reference 0x%02x", le, i / H, i % H,
            got.xFp8[at + i], want.xFp8[at + i]);
    }
  }
}

// Scales are stored token-fastest, so the valid rows of one (expert, group) are contiguous.
void checkScales(const llRefShape& sh, const Io& io, llRefDispatchOut& got, const llRefDispatchOut& want) {
  size_t El = localExperts(sh);
  if (got.payload == llRefPayload::kFp8Ue8m0) {
    CUDA_OK(cudaMemcpy(got.scalesUe8m0.data(), io.scales.get(), got.scalesUe8m0.size() * sizeof(int32_t),
                       cudaMemcpyDeviceToHost));
    for (size_t le = 0; le < El; le++) {
      for (size_t w = 0; w < ue8m0Words(sh); w++) {
        size_t at = llRefUe8m0Offset(sh, static_cast<int>(le), 0, static_cast<int>(w)),
               n = want.recvCount[le];
        size_t i = firstDiff(&got.scalesUe8m0[at], &want.scalesUe8m0[at], n);
        CHECK(i == n, "recvScales (ue8m0) [le=%zu][row=%zu][word=%zu] = 0x%08x, reference 0x%08x", le, i, w,
              (unsigned)got.scalesUe8m0[at + i], (unsigned)want.scalesUe8m0[at + i]);
      }
    }
    return;
  }
  CUDA_OK(cudaMemcpy(got.scales.data(), io.scales.get(), got.scales.size() * sizeof(float),
                     cudaMemcpyDeviceToHost));
  for (size_t le = 0; le < El; le++) {
    for (size_t g = 0; g < scaleGroups(sh); g++) {
      size_t at = llRefScaleOffset(sh, static_cast<int>(le), 0, static_cast<int>(g)), n = want.recvCount[le];
      size_t i = firstDiff(&got.scales[at], &want.scales[at], n);
      CHECK(i == n, "recvScales[le=%zu][row=%zu][group=%zu] = %a, reference %a", le, i, g, got.scales[at + i],
            want.scales[at + i]);
    }
  }
}

// A full-layout output to download into; only what the checks compare gets filled.
llRefDispatchOut emptyDispatchOut(const llRefShape& sh, llRefPayload payload) {
  size_t cells = localExperts(sh) * rowsPerExpert(sh);
  llRefDispatchOut d;
  d.payload = payload;
  if (isBf16(payload)) {
    d.xBf16.assign(cells * sh.H, kBf16NaN);
    return d;
  }
  d.xFp8.assign(cells * sh.H, kPoisonNaN);
  if (payload == llRefPayload::kFp8Ue8m0)
    d.scalesUe8m0.assign(ue8m0Words(sh) * cells, -1);
  else
    d.scales.assign(scaleGroups(sh) * cells, NAN);
  return d;
}

// After the stream: a kernel that reported an error (a timeout, a failed WQE) left outputs that are not
// worth comparing, and the error is what went wrong.
void expectNoAsyncError(Session& s) {
  CUDA_OK(cudaStreamSynchronize(s.stream));
  llResult_t asyncError = llSuccess;
  LL_OK(llCommGetAsyncError(s.comm, &asyncError));
  CHECK(asyncError == llSuccess, "a kernel reported %s: %s", llGetErrorString(asyncError), llGetLastError(s.comm));
}

// Compares the dispatch outputs with llRefDispatch and keeps them in c.received.
void checkDispatch(Session& s, const Io& io, Call& c) {
  expectNoAsyncError(s);
  c.received = emptyDispatchOut(s.shape, c.payload);
  checkLayout(s.shape, io, c.received, c.expected);
  downloadRows(s.shape, io, c.received);
  checkRows(s.shape, c.received, c.expected);
  if (!isBf16(c.payload)) checkScales(s.shape, io, c.received, c.expected);
}

// calc_diff is global, so one wrong element or one lost (t, k) term can hide in it. GPU and reference
// reduce the same bf16 expert outputs, so each element may differ only by the fp32 accumulation of K
// terms (< K * 2^-23 * sum|w*y|) and one rounding to bf16 (< 2^-8 relative); twice that passes.
void checkElements(const std::vector<double>& got, const ExpectedCombine& want, int H, int K) {
  for (size_t i = 0; i < got.size(); i++) {
    double bound = std::ldexp(std::fabs(want.out[i]), -7) + K * std::ldexp(want.magnitude[i], -22);
    CHECK(std::fabs(got[i] - want.out[i]) <= bound,
          "combine out[t=%zu][h=%zu] = %.8g, reference %.8g (bound %.3g)", i / H, i % H, got[i], want.out[i],
          bound);  // also fails on NaN
  }
}

void failCalcDiff(const std::vector<double>& got, const std::vector<double>& want, int H, double diff,
                  double tol) {
  llRefMaxDiff md = llRefMaxAbsDiff(got, want);
  CHECK(false,
        "combine out: calc_diff %.3g >= %.0g; max |diff| %.4g at [t=%zu][h=%zu]: %.6g vs reference %.6g",
        diff, tol, md.maxAbs, md.index / H, md.index % H, got[md.index], want[md.index]);
}

// out rows [0, T) against the fp64 reference; rows [T, N) must still be poison.
void checkCombine(Session& s, const Io& io, const Call& c) {
  expectNoAsyncError(s);
  size_t valid = static_cast<size_t>(c.mine().T) * s.shape.H;
  std::vector<uint16_t> out = io.out.download();
  for (size_t i = valid; i < out.size(); i++)
    CHECK(out[i] == kBf16NaN, "combine wrote out[t=%zu][h=%zu], past T = %d", i / s.shape.H, i % s.shape.H,
          c.mine().T);
  out.resize(valid);
  std::vector<double> got = llRefBf16ToDouble(out);
  ExpectedCombine want = referenceCombine(s.shape, c);
  checkElements(got, want, s.shape.H, s.shape.K);
  double tol = isBf16(c.payload) ? 1e-5 : 1e-3;
  double diff = llRefCalcDiff(got, want.out);  // NaN if any NaN: never passes
  if (!(diff < tol)) failCalcDiff(got, want.out, s.shape.H, diff, tol);
}

void checkWaits(const DeviceArray<int64_t>& dev, std::vector<int64_t>& last, const char* what) {
  std::vector<int64_t> now = dev.download();
  for (size_t r = 0; r < now.size(); r++)
    CHECK(now[r] >= 0 && now[r] >= last[r], "%s[%zu] = %lld, was %lld: must be >= 0 and never decrease", what,
          r, (long long)now[r], (long long)last[r]);
  last = now;
}

// After a call pair that passed the statistics (dispatch and combine checked, stream idle).
void checkStats(Session& s, const Call& c) {
  Stats& st = s.stats;
  std::vector<int32_t> recv = st.recv.download();
  for (size_t le = 0; le < recv.size(); le++) {
    st.expectRecv[le] += c.received.recvCount[le];
    CHECK(recv[le] == st.expectRecv[le], "cumulativeRecvStats[%zu] = %d, sum of recvCount %lld", le, recv[le],
          (long long)st.expectRecv[le]);
  }
  checkWaits(st.dispatchWait, st.lastDispatchWait, "dispatch waitTimeStats");
  checkWaits(st.combineWait, st.lastCombineWait, "combine waitTimeStats");
}

// ------------------------------------------------------------------------------------------------
// Call pairs

struct Mode {
  llRefPayload payload;
  bool hook;      // LL_SEND_ONLY + llHookRun, for dispatch and combine
  bool zeroCopy;  // combine reads the buffer of llGetCombineBuffer
};

std::string modeName(const Mode& m) {
  return format("%s %s %s", payloadName(m.payload), m.hook ? "hook" : "plain",
                m.zeroCopy ? "zero-copy" : "out");
}

// The receive phase is what writes the outputs: after the send phase alone (stream idle) they must be
// untouched. Then it runs the receive phase.
template <typename T>
void runHook(Session& s, llHook_t* hook, const DeviceArray<T>& output, T poison, const char* what) {
  CUDA_OK(cudaStreamSynchronize(s.stream));
  expectAll(output, poison, what);
  LL_OK(llHookRun(s.comm, hook, s.stream));
}

// Dispatch, check, expert outputs from what this rank received, combine, check.
void runFedPair(Session& s, Call& c, const Mode& m, bool withStats) {
  llHook_t hook = LL_HOOK_INITIALIZER;
  enqueueDispatch(s, s.io, c, withStats, m.hook ? &hook : nullptr);
  if (m.hook) runHook(s, &hook, s.io.recvCount, kPoisonInt32, "recvCount before the dispatch hook ran");
  checkDispatch(s, s.io, c);
  void* x = s.io.y.get();
  if (m.zeroCopy) {
    LL_OK(llGetCombineBuffer(s.comm, &x));  // the next llep call must be the combine
    CHECK(x != nullptr && reinterpret_cast<uintptr_t>(x) % 16 == 0, "llGetCombineBuffer gave %p", x);
  }
  uploadExpertOutputs(s, c.received, x);
  hook = LL_HOOK_INITIALIZER;
  enqueueCombine(s, s.io, c, x, m.zeroCopy ? LL_ZERO_COPY : 0, withStats, m.hook ? &hook : nullptr);
  if (m.hook) runHook(s, &hook, s.io.out, kBf16NaN, "combine out before the combine hook ran");
  checkCombine(s, s.io, c);
  if (withStats) checkStats(s, c);
}

// Dispatch and combine enqueued back to back, the expert outputs written beforehand from the
// reference layout (which the dispatch output is then checked to equal).
void runBackToBackPair(Session& s, Call& c, bool withStats) {
  uploadExpertOutputs(s, c.expected, s.io.y.get());
  enqueueDispatch(s, s.io, c, withStats, nullptr);
  enqueueCombine(s, s.io, c, s.io.y.get(), 0, withStats, nullptr);
  checkDispatch(s, s.io, c);
  checkCombine(s, s.io, c);
  if (withStats) checkStats(s, c);
}

// ------------------------------------------------------------------------------------------------
// matrix

// E = 0 means E = R (one expert per rank).
struct ShapeSpec {
  int N, H, E, K;
  bool raggedT;     // T per rank uniform in [0, N]; otherwise T = N
  double minusOne;  // fraction of top-k entries that are -1
  bool duplicates;  // experts drawn independently (a token may pick one twice); needed where K > E
  bool allToOne;    // every valid pair picks one hot expert
  bool quick;       // small enough for compute-sanitizer
  bool soak;        // one mode runs kSoakIters back-to-back iterations
  bool big;         // past DeepEP's limits: runs two modes once (host references are large)
};

// Full-layout host arrays are E*N*H elements (independent of R); kept <= ~30M so that 8 ranks on one
// machine stay fast.
// clang-format off
constexpr ShapeSpec kShapes[] = {
    // N     H      E    K   ragged  -1   dup    hot    quick  soak   big
    {8,    1536,  0,   1,  true,  0.1, false, false, true,  false, false},
    {16,   1536,  64,  8,  true,  0.1, false, false, true,  false, false},
    {8,    7168,  256, 16, true,  0.1, false, false, true,  false, false},
    {64,   4096,  64,  8,  false, 0.1, false, false, false, true,  false},
    {32,   7168,  64,  1,  true,  0.0, false, false, false, false, false},
    {16,   4096,  256, 16, false, 0.1, false, false, false, false, false},
    {32,   1536,  0,   16, true,  0.1, true,  false, false, false, false},
    {64,   7168,  64,  8,  true,  0.0, false, true,  false, false, false},
    {48,   1536,  256, 8,  true,  0.1, false, false, false, false, false},
    {1024, 1536,  64,  8,  false, 0.0, false, true,  false, false, true},   // N = 1024, all on one expert
    {16,   16384, 64,  8,  true,  0.1, false, false, false, false, true},   // H = 16384
    {16,   640,   64,  8,  true,  0.1, false, false, true,  false, false},  // 5 scale groups: UE8M0 word ends the row
    {24,   896,   32,  4,  true,  0.0, false, false, false, false, false},  // 7 scale groups: a partial last chunk
};
// clang-format on
constexpr int kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

struct Options {
  bool quick = false;
  std::vector<int> shapes;  // empty: all (or all quick ones)
  int iters = 0;            // per mode; 0: 2, or 1 with --quick
  uint64_t seed = 1;
};

llRefShape shapeOf(const ShapeSpec& spec) {
  return llRefShape{gWorld, spec.E ? spec.E : gWorld, spec.N, spec.H, spec.K};
}

std::string shapeName(const llRefShape& sh, const ShapeSpec& spec) {
  return format("R=%d N=%d H=%d E=%d K=%d%s%s%s%s", sh.R, sh.N, sh.H, sh.E, sh.K,
                spec.raggedT ? " ragged" : "", spec.minusOne > 0 ? " -1s" : "",
                spec.duplicates ? " duplicates" : "", spec.allToOne ? " all-to-one" : "");
}

// "" if the shape fits this rank count, else why not.
std::string unusable(const llRefShape& sh, const ShapeSpec& spec) {
  if (sh.E % sh.R != 0) return "E is not a multiple of R";
  if (!spec.duplicates && !spec.allToOne && sh.K > sh.E) return "distinct experts need K <= E";
  return "";
}

std::vector<llRefRankInput> matrixInputs(const llRefShape& sh, const ShapeSpec& spec, uint64_t seed) {
  llRefGenOptions g;
  g.fractionMinusOne = spec.minusOne;
  g.raggedT = spec.raggedT;
  g.distinctExperts = !spec.duplicates;
  g.allToOneExpert = spec.allToOne;
  g.hotExpert = static_cast<int>(seed % static_cast<uint64_t>(sh.E));
  return llRefMakeInputs(sh, seed, g);
}

// Runs every mode on one shape; returns the call pairs run.
int runShape(const Options& o, int index) {
  const ShapeSpec& spec = kShapes[index];
  llRefShape sh = shapeOf(spec);
  std::string name = shapeName(sh, spec), why = unusable(sh, spec);
  if (!why.empty()) {
    if (gRank == 0) printf("matrix shape %d (%s): skipped, %s\n", index, name.c_str(), why.c_str());
    return 0;
  }
  auto start = std::chrono::steady_clock::now();
  Session s(sh, 0);
  int pairs = 0, combo = 0;
  for (llRefPayload p :
       {llRefPayload::kBf16, llRefPayload::kFp8, llRefPayload::kFp8RoundScale, llRefPayload::kFp8Ue8m0}) {
    for (bool hook : {false, true}) {
      for (bool zeroCopy : {false, true}) {
        Mode m{p, hook, zeroCopy};
        bool soak = spec.soak && p == llRefPayload::kFp8 && !hook && !zeroCopy;
        bool bigMode = (p == llRefPayload::kFp8 && !hook && !zeroCopy) ||
                       (p == llRefPayload::kBf16 && hook && zeroCopy);
        if (spec.big && !bigMode) continue;
        int iters = soak ? kSoakIters : spec.big ? 1 : o.iters;
        for (int it = 0; it < iters; it++, pairs++) {
          uint64_t seed = o.seed * 1000003u + index * 100000u + combo * 1000u + it;
          gWhere = format("matrix shape %d (%s), %s, iteration %d, seed %llu", index, name.c_str(),
                          modeName(m).c_str(), it, (unsigned long long)seed);
          std::vector<llRefRankInput> inputs = matrixInputs(sh, spec, seed);
          // Ragged T reaches 0 only by chance: one mode in four empties a rank outright.
          if (spec.raggedT && it == 0 && combo % 4 == 3) truncateTokens(sh, 0, inputs[(combo / 4) % sh.R]);
          Call c = makeCall(sh, std::move(inputs), p);
          if (soak)
            runBackToBackPair(s, c, it % 2 == 0);
          else
            runFedPair(s, c, m, it % 2 == 0);
        }
        combo++;
      }
    }
    gWhere = format("matrix shape %d (%s), llCleanBuffer after %s", index, name.c_str(), payloadName(p));
    LL_OK(llCleanBuffer(s.comm, s.stream));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (gRank == 0)
    printf("matrix shape %d (%s): 16 modes x %d iterations%s: %d call pairs ok, %.1f s\n", index,
           name.c_str(), o.iters, spec.soak ? format(" (+%d back-to-back fp8)", kSoakIters).c_str() : "",
           pairs, secs);
  return pairs;
}

std::vector<int> parseList(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    char* end = nullptr;
    long i = strtol(p, &end, 10);
    CHECK(end != p && i >= 0 && i < kNumShapes, "--shapes %s: indices are 0..%d", s, kNumShapes - 1);
    v.push_back(static_cast<int>(i));
    p = *end == ',' ? end + 1 : end;
    CHECK(*end == ',' || *end == '\0', "--shapes %s: a comma-separated list", s);
  }
  return v;
}

Options parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    bool hasValue = i + 1 < argc;
    if (a == "--quick")
      o.quick = true;
    else if (a == "--shapes" && hasValue)
      o.shapes = parseList(argv[++i]);
    else if (a == "--iters" && hasValue)
      o.iters = atoi(argv[++i]);
    else if (a == "--seed" && hasValue)
      o.seed = strtoull(argv[++i], nullptr, 0);
    else
      CHECK(false, "unknown option %s (matrix [--quick] [--shapes 0,3] [--iters N] [--seed S])", a.c_str());
  }
  if (o.iters <= 0) o.iters = o.quick ? 1 : 2;
  if (o.shapes.empty())
    for (int i = 0; i < kNumShapes; i++)
      if (!o.quick || kShapes[i].quick) o.shapes.push_back(i);
  return o;
}

int runMatrix(const Options& o) {
  int pairs = 0;
  for (int i : o.shapes) pairs += runShape(o, i);
  printf("rank %d: PASS matrix (R=%d, %zu shapes, %d call pairs)\n", gRank, gWorld, o.shapes.size(), pairs);
  return 0;
}

// ------------------------------------------------------------------------------------------------
// graph

llRefShape smallShape(int N, int H, int K) { return llRefShape{gWorld, 8 * gWorld, N, H, K}; }

// Fresh inputs with the per-rank token counts the graph was captured with.
std::vector<llRefRankInput> graphInputs(const llRefShape& sh, uint64_t seed, const std::vector<int>& T) {
  llRefGenOptions g;
  g.fractionMinusOne = 0.1;
  std::vector<llRefRankInput> inputs = llRefMakeInputs(sh, seed, g);  // T = N on every rank
  for (int r = 0; r < sh.R; r++) truncateTokens(sh, T[r], inputs[r]);
  return inputs;
}

cudaGraphExec_t captureFp8Pair(Session& s, int T, llDispatchHandle_t* handle) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeGlobal));
  llDispatchArgs_t d = dispatchArgs(s, s.io, T, LL_FP8, true, nullptr);
  LL_OK(llDispatch(s.comm, &d, handle, s.stream));
  llCombineArgs_t c = combineArgs(s, s.io, T, s.io.y.get(), 0, true, nullptr);
  LL_OK(llCombine(s.comm, &c, handle, s.stream));
  CUDA_OK(cudaStreamEndCapture(s.stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphDestroy(graph));
  return exec;
}

int runGraph() {
  llRefShape sh = smallShape(32, 4096, 8);
  Session s(sh, 0);
  std::vector<int> T;  // baked into the graph: ragged, then fixed
  for (const llRefRankInput& in : llRefMakeInputs(sh, 7, raggedOptions(0))) T.push_back(in.T);
  gWhere = "graph capture";
  llDispatchHandle_t handle = LL_DISPATCH_HANDLE_INITIALIZER;
  cudaGraphExec_t exec = captureFp8Pair(s, T[gRank], &handle);
  for (int i = 0; i < kGraphReplays; i++) {
    gWhere = format("graph replay %d (R=%d N=%d H=%d E=%d K=%d fp8, T=%d)", i, sh.R, sh.N, sh.H, sh.E, sh.K,
                    T[gRank]);
    Call c = makeCall(sh, graphInputs(sh, 1000 + i, T), llRefPayload::kFp8);
    // The graph runs dispatch and combine back to back: the expert outputs come from the reference.
    uploadExpertOutputs(s, c.expected, s.io.y.get());
    stageInputs(s.io, c.mine(), s.stream);
    CUDA_OK(cudaGraphLaunch(exec, s.stream));
    checkDispatch(s, s.io, c);
    checkCombine(s, s.io, c);
    checkStats(s, c);
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  // The library's host state must still agree with the buffers after the replays.
  gWhere = "graph: eager pair after the replays (fp8 hook zero-copy)";
  Call c = makeCall(sh, llRefMakeInputs(sh, 5000, raggedOptions(0.1)), llRefPayload::kFp8);
  runFedPair(s, c, Mode{llRefPayload::kFp8, true, true}, true);
  printf("rank %d: PASS graph (R=%d, %d replays, T=%d)\n", gRank, gWorld, kGraphReplays, T[gRank]);
  return 0;
}

// ------------------------------------------------------------------------------------------------
// badinput

// Whether msg holds word as a whole identifier ("x" is not found in "recvX").
bool mentionsWord(const std::string& msg, const std::string& word) {
  auto ident = [](char ch) { return isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  for (size_t at = msg.find(word); at != std::string::npos; at = msg.find(word, at + 1)) {
    size_t end = at + word.size();
    if ((at == 0 || !ident(msg[at - 1])) && (end == msg.size() || !ident(msg[end]))) return true;
  }
  return false;
}

// A refused call: the documented code, and a message that names the culprit (and holds phrase, if set).
void expectRefused(llResult_t got, llResult_t want, const char* what, const char* word,
                   const char* phrase = nullptr) {
  std::string msg = llGetLastError(nullptr);
  CHECK(got == want, "%s: returned %s, expected %s", what, llGetErrorString(got), llGetErrorString(want));
  CHECK(mentionsWord(msg, word), "%s: message \"%s\" does not name '%s'", what, msg.c_str(), word);
  CHECK(!phrase || msg.find(phrase) != std::string::npos, "%s: message \"%s\" lacks '%s'", what, msg.c_str(),
        phrase);
}

struct DispatchArgCase {
  const char* what;
  void (*mutate)(llDispatchArgs_t& a, const llRefShape& sh);
  const char* word;
  const char* phrase;
};

const DispatchArgCase kDispatchArgCases[] = {
    {"numTokens > N", [](llDispatchArgs_t& a, const llRefShape& sh) { a.numTokens = sh.N + 1; }, "numTokens",
     nullptr},
    {"numTokens < 0", [](llDispatchArgs_t& a, const llRefShape&) { a.numTokens = -1; }, "numTokens", nullptr},
    {"topk > maxTopk", [](llDispatchArgs_t& a, const llRefShape&) { a.topk = LL_MAX_TOPK + 1; }, "topk",
     nullptr},
    {"topk < 1", [](llDispatchArgs_t& a, const llRefShape&) { a.topk = 0; }, "topk", nullptr},
    {"NULL x", [](llDispatchArgs_t& a, const llRefShape&) { a.x = nullptr; }, "x", nullptr},
    {"NULL topkIdx", [](llDispatchArgs_t& a, const llRefShape&) { a.topkIdx = nullptr; }, "topkIdx", nullptr},
    {"NULL recvX", [](llDispatchArgs_t& a, const llRefShape&) { a.recvX = nullptr; }, "recvX", nullptr},
    {"NULL recvCount", [](llDispatchArgs_t& a, const llRefShape&) { a.recvCount = nullptr; }, "recvCount",
     nullptr},
    {"NULL srcInfo", [](llDispatchArgs_t& a, const llRefShape&) { a.srcInfo = nullptr; }, "srcInfo", nullptr},
    {"NULL layoutRange", [](llDispatchArgs_t& a, const llRefShape&) { a.layoutRange = nullptr; },
     "layoutRange", nullptr},
    {"LL_FP8 with NULL recvScales", [](llDispatchArgs_t& a, const llRefShape&) { a.flags |= LL_FP8; },
     "recvScales", nullptr},
    {"misaligned x", [](llDispatchArgs_t& a, const llRefShape&) { a.x = static_cast<const char*>(a.x) + 2; },
     "x", "align"},
    {"misaligned recvX",
     [](llDispatchArgs_t& a, const llRefShape&) { a.recvX = static_cast<char*>(a.recvX) + 2; }, "recvX",
     "align"},
    {"LL_SEND_ONLY with NULL hook", [](llDispatchArgs_t& a, const llRefShape&) { a.flags |= LL_SEND_ONLY; },
     "hook", nullptr},
    {"args magic", [](llDispatchArgs_t& a, const llRefShape&) { a.magic = 0; }, "magic", nullptr},
    {"args size", [](llDispatchArgs_t& a, const llRefShape&) { a.size = 0; }, "size", nullptr},
};

void badDispatchArgs(Session& s) {
  llRefRankInput in = llRefMakeInputs(s.shape, 11)[gRank];
  stageInputs(s.io, in, s.stream);
  llDispatchArgs_t base = dispatchArgs(s, s.io, in.T, 0, false, nullptr);
  for (const DispatchArgCase& k : kDispatchArgCases) {
    gWhere = format("badinput: dispatch %s", k.what);
    llDispatchArgs_t a = base;
    k.mutate(a, s.shape);
    llDispatchHandle_t h = LL_DISPATCH_HANDLE_INITIALIZER;
    expectRefused(llDispatch(s.comm, &a, &h, s.stream), llInvalidArgument, k.what, k.word, k.phrase);
  }
}

struct CombineArgCase {
  const char* what;
  void (*mutate)(llCombineArgs_t& a, llDispatchHandle_t& h);
  llResult_t want;
  const char* word;
};

const CombineArgCase kCombineArgCases[] = {
    {"args magic", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.magic = 0; }, llInvalidArgument, "magic"},
    {"args size", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.size = 0; }, llInvalidArgument, "size"},
    {"handle magic", [](llCombineArgs_t&, llDispatchHandle_t& h) { h.magic = 0; }, llInvalidArgument,
     "handle"},
    {"NULL x", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.x = nullptr; }, llInvalidArgument, "x"},
    {"NULL out", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.out = nullptr; }, llInvalidArgument, "out"},
    {"NULL topkWeights", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.topkWeights = nullptr; },
     llInvalidArgument, "topkWeights"},
    {"LL_SEND_ONLY with NULL hook", [](llCombineArgs_t& a, llDispatchHandle_t&) { a.flags |= LL_SEND_ONLY; },
     llInvalidArgument, "hook"},
    {"LL_ZERO_COPY, x not from llGetCombineBuffer",
     [](llCombineArgs_t& a, llDispatchHandle_t&) { a.flags |= LL_ZERO_COPY; }, llInvalidUsage,
     "llGetCombineBuffer"},
};

// Refused combines between a dispatch and its real combine: they must leave no trace.
void badCombineArgs(Session& s) {
  gWhere = "badinput: dispatch before the refused combines";
  Call c = makeCall(s.shape, llRefMakeInputs(s.shape, 12), llRefPayload::kBf16);
  enqueueDispatch(s, s.io, c, false, nullptr);
  checkDispatch(s, s.io, c);
  uploadExpertOutputs(s, c.received, s.io.y.get());
  llCombineArgs_t base = combineArgs(s, s.io, c.mine().T, s.io.y.get(), 0, false, nullptr);
  for (const CombineArgCase& k : kCombineArgCases) {
    gWhere = format("badinput: combine %s", k.what);
    llCombineArgs_t a = base;
    llDispatchHandle_t h = c.handle;
    k.mutate(a, h);
    expectRefused(llCombine(s.comm, &a, &h, s.stream), k.want, k.what, k.word);
  }
  gWhere = "badinput: the real combine after the refused ones";
  enqueueCombine(s, s.io, c, s.io.y.get(), 0, false, nullptr);
  checkCombine(s, s.io, c);
}

// A handle of communicator b passed to a's combine.
void foreignHandle(Session& a) {
  gWhere = "badinput: second communicator";
  Session b(a.shape, kBadInputTimeoutMs);
  Call cb = makeCall(b.shape, llRefMakeInputs(b.shape, 13), llRefPayload::kBf16);
  enqueueDispatch(b, b.io, cb, false, nullptr);
  checkDispatch(b, b.io, cb);
  uploadExpertOutputs(b, cb.received, b.io.y.get());
  gWhere = "badinput: combine with another communicator's handle";
  llCombineArgs_t args = combineArgs(a, a.io, cb.mine().T, a.io.y.get(), 0, false, nullptr);
  expectRefused(llCombine(a.comm, &args, &cb.handle, a.stream), llInvalidUsage, "foreign handle",
                "communicator");
  gWhere = "badinput: the second communicator's own combine";
  enqueueCombine(b, b.io, cb, b.io.y.get(), 0, false, nullptr);
  checkCombine(b, b.io, cb);
}

// Two pending send-only dispatches fill both internal buffers: a third call is refused; the two hooks
// then complete, and the two combines run in the other order (two micro-batches).
void thirdOutstanding(Session& s) {
  gWhere = "badinput: two pending send-only dispatches";
  Io io2(s.shape);
  Call c1 = makeCall(s.shape, llRefMakeInputs(s.shape, 14, raggedOptions(0.1)), llRefPayload::kBf16);
  Call c2 = makeCall(s.shape, llRefMakeInputs(s.shape, 15, raggedOptions(0.1)), llRefPayload::kFp8);
  llHook_t h1 = LL_HOOK_INITIALIZER, h2 = LL_HOOK_INITIALIZER;
  enqueueDispatch(s, s.io, c1, false, &h1);
  enqueueDispatch(s, io2, c2, false, &h2);
  gWhere = "badinput: a third call with two results outstanding";
  llDispatchArgs_t a3 = dispatchArgs(s, s.io, c1.mine().T, 0, false, nullptr);
  llDispatchHandle_t h3 = LL_DISPATCH_HANDLE_INITIALIZER;
  expectRefused(llDispatch(s.comm, &a3, &h3, s.stream), llInvalidUsage, "third outstanding result",
                "outstanding");
  gWhere = "badinput: the two hooks after the refused call";
  LL_OK(llHookRun(s.comm, &h1, s.stream));
  LL_OK(llHookRun(s.comm, &h2, s.stream));
  checkDispatch(s, s.io, c1);
  checkDispatch(s, io2, c2);
  uploadExpertOutputs(s, c2.received, io2.y.get());
  enqueueCombine(s, io2, c2, io2.y.get(), 0, false, nullptr);
  checkCombine(s, io2, c2);
  uploadExpertOutputs(s, c1.received, s.io.y.get());
  enqueueCombine(s, s.io, c1, s.io.y.get(), 0, false, nullptr);
  checkCombine(s, s.io, c1);
}

void hookMisuse(Session& s) {
  gWhere = "badinput: llHookRun twice";
  Call c = makeCall(s.shape, llRefMakeInputs(s.shape, 16), llRefPayload::kFp8Ue8m0);
  llHook_t hook = LL_HOOK_INITIALIZER;
  enqueueDispatch(s, s.io, c, false, &hook);
  LL_OK(llHookRun(s.comm, &hook, s.stream));
  expectRefused(llHookRun(s.comm, &hook, s.stream), llInvalidUsage, "second llHookRun", "hook");
  checkDispatch(s, s.io, c);
  uploadExpertOutputs(s, c.received, s.io.y.get());
  enqueueCombine(s, s.io, c, s.io.y.get(), 0, false, nullptr);
  checkCombine(s, s.io, c);
  gWhere = "badinput: hook and buffer arguments";
  expectRefused(llHookRun(s.comm, nullptr, s.stream), llInvalidArgument, "llHookRun(NULL)", "hook");
  llHook_t foreign = LL_HOOK_INITIALIZER;
  foreign.magic = 0;
  expectRefused(llHookRun(s.comm, &foreign, s.stream), llInvalidArgument, "hook magic", "magic");
  expectRefused(llGetCombineBuffer(s.comm, nullptr), llInvalidArgument, "llGetCombineBuffer(NULL)", "buffer");
}

void waitForStream(Session& s, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  cudaError_t e;
  while ((e = cudaStreamQuery(s.stream)) == cudaErrorNotReady && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(e == cudaSuccess, "stream %s after %d s",
        e == cudaErrorNotReady ? "still busy (hang?)" : cudaGetErrorString(e), seconds);
}

// Device data is not checked on the host: the call is accepted, completes, and leaves an async error.
// Last, since the communicator keeps that error.
void outOfRangeExpert(Session& s) {
  gWhere = "badinput: expert indices E and -2 in topkIdx";
  llRefRankInput in = llRefMakeInputs(s.shape, 17)[gRank];  // T = N >= 2
  in.topk[0] = s.shape.E;
  in.topk[s.shape.K] = -2;
  stageInputs(s.io, in, s.stream);
  llDispatchArgs_t a = dispatchArgs(s, s.io, in.T, 0, false, nullptr);
  llDispatchHandle_t h = LL_DISPATCH_HANDLE_INITIALIZER;
  LL_OK(llDispatch(s.comm, &a, &h, s.stream));
  waitForStream(s, 3 * kBadInputTimeoutMs / 1000);
  llResult_t asyncError = llSuccess;
  LL_OK(llCommGetAsyncError(s.comm, &asyncError));
  CHECK(asyncError == llInvalidArgument, "async error %s, expected %s", llGetErrorString(asyncError),
        llGetErrorString(llInvalidArgument));
  LL_OK(llCleanBuffer(s.comm, s.stream));
}

int runBadInput() {
  Session s(smallShape(16, 1536, 4), kBadInputTimeoutMs);
  badDispatchArgs(s);
  badCombineArgs(s);
  foreignHandle(s);
  thirdOutstanding(s);
  hookMisuse(s);
  outOfRangeExpert(s);
  printf("rank %d: PASS badinput (R=%d, %zu dispatch and %zu combine argument cases, misuse, async error)\n",
         gRank, gWorld, sizeof(kDispatchArgCases) / sizeof(kDispatchArgCases[0]),
         sizeof(kCombineArgCases) / sizeof(kCombineArgCases[0]));
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
  gBasePort = envInt("MASTER_PORT", 0);
  CHECK(getenv("MASTER_ADDR") && gBasePort > 0, "MASTER_ADDR/MASTER_PORT not set (run under llrun)");
  gRunKey = llExchangeRunKey();
  std::vector<char*> args(argv, argv + argc);
  for (auto it = args.begin(); it != args.end();) {
    if (strcmp(*it, "--nccl") != 0) {
      ++it;
      continue;
    }
    it = args.erase(it);
    if (gWorld > count) {
      printf("SKIP: --nccl with %d ranks on %d GPU(s): NCCL takes one rank per GPU\n", gWorld, count);
      return 77;
    }
    std::string why;
    gNccl = llTestNcclLoad(&why);
    if (!gNccl) {
      printf("SKIP: --nccl: %s\n", why.c_str());
      return 77;
    }
  }
  argc = static_cast<int>(args.size());
  argv = args.data();
  // Before any llep call: the library reads LLEP_UNIQUE_ID once, and it would win over MASTER_PORT.
  unsetenv("LLEP_UNIQUE_ID");
  CUDA_OK(cudaSetDevice(envInt("LOCAL_RANK", gRank) % count));
  CUDA_OK(cudaFree(nullptr));
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "matrix") return runMatrix(parseOptions(argc, argv));
  if (mode == "graph") return runGraph();
  if (mode == "badinput") return runBadInput();
  fprintf(stderr,
          "usage: test_dispatch_combine matrix [--quick] [--shapes 0,3] [--iters N] [--seed S] | graph | "
          "badinput\n");
  return 2;
}
