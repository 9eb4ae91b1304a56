#include "test/perf/perf_check.h"

#include <cstring>
#include <string>

#include "device/fp8_quant.h"
#include "test/perf/perf_common.h"

namespace {

constexpr double kCombineTolerance = 1e-5;

template <typename T>
void uploadAsync(T* dst, const std::vector<T>& v, cudaStream_t s) {
  if (!v.empty()) PERF_CUDA(cudaMemcpyAsync(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice, s));
}

// The stream is synchronised first: the library's calls run on it, and this copy must see their results.
template <typename T>
std::vector<T> download(const T* src, size_t n, cudaStream_t s) {
  std::vector<T> v(n);
  PERF_CUDA(cudaStreamSynchronize(s));
  if (n) PERF_CUDA(cudaMemcpyAsync(v.data(), src, n * sizeof(T), cudaMemcpyDeviceToHost, s));
  PERF_CUDA(cudaStreamSynchronize(s));
  return v;
}

int groups(const llPerfCase& c) { return c.shape.H / kLlQuantGroup; }

const uint16_t* tokenOf(const llPerfCase& c, int s, int t) {
  return &c.inputs[s].x[static_cast<size_t>(t) * c.shape.H];
}

// A token as dispatch delivers it: bf16 bits, or e4m3 bytes and one scale per group.
struct Delivered {
  std::vector<uint8_t> q;
  std::vector<float> scales;
};

Delivered deliver(const llPerfCase& c, int s, int t) {
  Delivered d;
  d.q.resize(c.shape.H);
  d.scales.resize(groups(c));
  llRefQuantizeRow(tokenOf(c, s, t), c.shape.H, /*roundScale=*/c.ue8m0, d.q.data(), d.scales.data());
  return d;
}

// The token's values as the receiver holds them.
std::vector<float> receivedValue(const llPerfCase& c, int s, int t) {
  int H = c.shape.H;
  std::vector<float> v(H);
  const uint16_t* x = tokenOf(c, s, t);
  if (!c.fp8) {
    for (int h = 0; h < H; h++) v[h] = llBf16ToFloat(x[h]);
    return v;
  }
  Delivered d = deliver(c, s, t);
  for (int h = 0; h < H; h++) v[h] = llFp8E4m3ToFloat(d.q[h]) * d.scales[h / kLlQuantGroup];
  return v;
}

// What expert e computes from a row: its value times 1 + (e % 7) / 8, rounded once to bf16.
std::vector<uint16_t> expertOutput(const std::vector<float>& value, int e) {
  double factor = 1.0 + (e % 7) / 8.0;
  std::vector<uint16_t> y(value.size());
  for (size_t h = 0; h < value.size(); h++) y[h] = llRefDoubleToBf16(value[h] * factor);
  return y;
}

int globalExpert(const llPerfCase& c, size_t le) {
  return c.rank * (c.shape.E / c.shape.R) + static_cast<int>(le);
}

void uploadExpertOutputs(const llPerfCase& c, llPerfIo& io, cudaStream_t s) {
  size_t H = c.shape.H;
  for (size_t le = 0; le < c.rows.size(); le++) {
    std::vector<uint16_t> rows;
    rows.reserve(c.rows[le].size() * H);
    for (const auto& [src, t] : c.rows[le]) {
      std::vector<uint16_t> y = expertOutput(receivedValue(c, src, t), globalExpert(c, le));
      rows.insert(rows.end(), y.begin(), y.end());
    }
    uploadAsync(io.y + le * io.rows() * H, rows, s);
    PERF_CUDA(cudaStreamSynchronize(s));  // `rows` is a pageable source: keep it until copied
  }
}

void poisonOutputs(llPerfIo& io, cudaStream_t s) {
  size_t cells = io.localExperts() * io.rows(), El = io.localExperts();
  PERF_CUDA(cudaMemsetAsync(io.recvX, 0xFF, cells * io.recvRowBytes(), s));
  if (io.fp8) PERF_CUDA(cudaMemsetAsync(io.scales, 0xFF, cells * (io.shape.H / 128) * sizeof(float), s));
  PERF_CUDA(cudaMemsetAsync(io.recvCount, 0x7F, El * sizeof(int32_t), s));
  PERF_CUDA(cudaMemsetAsync(io.srcInfo, 0x7F, cells * sizeof(int32_t), s));
  PERF_CUDA(cudaMemsetAsync(io.layoutRange, 0x7F, El * io.shape.R * sizeof(int64_t), s));
  PERF_CUDA(cudaMemsetAsync(io.out, 0xFF, static_cast<size_t>(io.shape.N) * io.shape.H * 2, s));
}

// Whether received row j of local expert le holds token (src, t): payload, and scales for fp8.
bool rowMatches(const llPerfCase& c, const llPerfIo& io, const std::vector<uint8_t>& payload,
                const std::vector<float>& scales, size_t le, size_t j, int src, int t) {
  size_t rowBytes = io.recvRowBytes();
  const uint8_t* got = &payload[j * rowBytes];
  if (!c.fp8) return memcmp(got, tokenOf(c, src, t), rowBytes) == 0;
  Delivered d = deliver(c, src, t);
  if (memcmp(got, d.q.data(), rowBytes) != 0) return false;
  if (c.ue8m0) {  // the scales buffer holds int32 words
    std::vector<int32_t> want(llUe8m0Words(c.shape.H));
    llRefPackUe8m0(d.scales.data(), groups(c), want.data());
    for (size_t p = 0; p < want.size(); p++) {
      int32_t have;
      memcpy(&have, &scales[llRefUe8m0Offset(c.shape, (int)le, (int)j, (int)p)], sizeof(have));
      if (have != want[p]) return false;
    }
    return true;
  }
  for (int g = 0; g < groups(c); g++) {
    float s = scales[llRefScaleOffset(c.shape, (int)le, (int)j, g)];
    if (memcmp(&s, &d.scales[g], sizeof(float)) != 0) return false;
  }
  return true;
}

// Each source rank's (begin << 32) | count within one local expert's rows.
std::vector<int64_t> expectedRanges(const llPerfCase& c, size_t le) {
  std::vector<int64_t> count(c.shape.R, 0), range(c.shape.R);
  for (const auto& row : c.rows[le]) count[row.first]++;
  int64_t begin = 0;
  for (int i = 0; i < c.shape.R; i++) {
    int s = llRefSourceAt(c.shape, c.rank, i);
    range[s] = (begin << 32) | count[s];
    begin += count[s];
  }
  return range;
}

long checkExpert(const llPerfCase& c, const llPerfIo& io, size_t le, int32_t count, const int64_t* ranges,
                 const int32_t* srcInfo, const std::vector<float>& scales, cudaStream_t s) {
  const std::vector<std::pair<int, int>>& want = c.rows[le];
  if (count != static_cast<int32_t>(want.size())) return std::max<long>(static_cast<long>(want.size()), 1);
  std::vector<int64_t> wantRanges = expectedRanges(c, le);
  long wrong = 0;
  for (int src = 0; src < c.shape.R; src++)
    wrong += ranges[src] != wantRanges[src] && (wantRanges[src] & 0xffffffff) == 0;  // no rows to blame
  const uint8_t* base = static_cast<const uint8_t*>(io.recvX) + le * io.rows() * io.recvRowBytes();
  std::vector<uint8_t> payload = download(base, want.size() * io.recvRowBytes(), s);
  for (size_t j = 0; j < want.size(); j++) {
    auto [src, t] = want[j];
    bool ok = ranges[src] == wantRanges[src] && srcInfo[j] == t &&
              rowMatches(c, io, payload, scales, le, j, src, t);
    wrong += !ok;
  }
  return wrong;
}

}  // namespace

llPerfCase llPerfMakeCase(const llRefShape& shape, bool fp8, bool ue8m0, int T, int rank, uint64_t seed) {
  llPerfCase c;
  c.shape = shape;
  c.fp8 = fp8;
  c.ue8m0 = ue8m0;
  c.rank = rank;
  c.T = T;
  llRefShape drawn = shape;
  drawn.N = T;  // the generator gives every rank N tokens
  c.inputs = llRefMakeInputs(drawn, seed);
  std::string problem = llRefValidate(shape, c.inputs);
  if (!problem.empty()) llPerfDie("generated inputs are invalid: %s", problem.c_str());
  int El = shape.E / shape.R;
  c.rows.resize(El);
  for (int i = 0; i < shape.R; i++) {  // row order: this rank's own tokens first, then the next ranks
    int s = llRefSourceAt(shape, rank, i);
    const std::vector<int64_t>& topk = c.inputs[s].topk;
    for (size_t i = 0; i < topk.size(); i++)
      if (topk[i] >= 0 && topk[i] / El == rank)
        c.rows[topk[i] % El].push_back({s, static_cast<int>(i / shape.K)});
  }
  return c;
}

long llPerfValidPairs(const llPerfCase& c) {
  long n = 0;
  for (int64_t e : c.mine().topk) n += e >= 0;
  return n;
}

void llPerfUploadInputs(const llPerfCase& c, llPerfIo& io, cudaStream_t s) {
  uploadAsync(io.x, c.mine().x, s);
  uploadAsync(io.topk, c.mine().topk, s);
  uploadAsync(io.weights, c.mine().weights, s);
  PERF_CUDA(cudaStreamSynchronize(s));
}

void llPerfPrepareCheck(const llPerfCase& c, llPerfIo& io, cudaStream_t s) {
  uploadExpertOutputs(c, io, s);
  poisonOutputs(io, s);
  PERF_CUDA(cudaStreamSynchronize(s));
}

long llPerfCheckDispatch(const llPerfCase& c, const llPerfIo& io, cudaStream_t s) {
  size_t El = io.localExperts(), cells = El * io.rows();
  std::vector<int32_t> count = download(io.recvCount, El, s);
  std::vector<int64_t> ranges = download(io.layoutRange, El * c.shape.R, s);
  std::vector<int32_t> srcInfo = download(io.srcInfo, cells, s);
  std::vector<float> scales;
  if (c.fp8) scales = download(io.scales, cells * groups(c), s);
  long wrong = 0;
  for (size_t le = 0; le < El; le++)
    wrong += checkExpert(c, io, le, count[le], &ranges[le * c.shape.R], &srcInfo[le * io.rows()], scales, s);
  return wrong;
}

long llPerfCheckCombine(const llPerfCase& c, const llPerfIo& io, cudaStream_t s) {
  size_t H = c.shape.H;
  int K = c.shape.K;
  std::vector<uint16_t> out = download(io.out, c.T * H, s);
  const llRefRankInput& in = c.mine();
  long wrong = 0;
  for (int t = 0; t < c.T; t++) {
    std::vector<float> value = receivedValue(c, c.rank, t);
    std::vector<double> want(H, 0.0), got(H);
    for (int k = 0; k < K; k++) {
      size_t i = static_cast<size_t>(t) * K + k;
      if (in.topk[i] < 0) continue;
      std::vector<uint16_t> y = expertOutput(value, static_cast<int>(in.topk[i]));
      for (size_t h = 0; h < H; h++) want[h] += static_cast<double>(in.weights[i]) * llBf16ToFloat(y[h]);
    }
    for (size_t h = 0; h < H; h++) got[h] = llBf16ToFloat(out[t * H + h]);
    wrong += !(llRefCalcDiff(got, want) < kCombineTolerance);  // NaN never passes
  }
  return wrong;
}
