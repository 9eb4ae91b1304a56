// CPU reference of llDispatch / llCombine; see reference.h for the semantics it pins down.
#include "test/reference/reference.h"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "device/fp8_quant.h"

static std::string llRefShapeProblem(const llRefShape& s) {
  if (s.R < 1) return "R must be >= 1";
  if (s.E < s.R || s.E % s.R != 0) return "E must be a positive multiple of R";
  if (s.N < 1) return "N must be >= 1";
  if (s.H < kLlQuantGroup || s.H % kLlQuantGroup != 0) return "H must be a positive multiple of 128";
  if (s.K < 1) return "K must be >= 1";
  return "";
}

static std::string llRefRankProblem(const llRefShape& shape, const llRefRankInput& in) {
  size_t T = static_cast<size_t>(in.T);
  if (in.T < 0 || in.T > shape.N) return "T out of [0, N]";
  if (in.x.size() != T * shape.H) return "x is not [T, H]";
  if (in.topk.size() != T * shape.K) return "topk is not [T, K]";
  if (in.weights.size() != T * shape.K) return "weights is not [T, K]";
  for (int64_t e : in.topk)
    if (e < -1 || e >= shape.E) return "topk value " + std::to_string(e) + " out of [-1, E)";
  return "";
}

// Count check only: duplicates within a token are the one way past N rows per (expert, source).
static std::string llRefCountProblem(const llRefShape& shape, const std::vector<llRefRankInput>& inputs) {
  for (int s = 0; s < shape.R; s++) {
    std::vector<int> count(shape.E, 0);
    for (int64_t e : inputs[s].topk)
      if (e >= 0 && ++count[e] > shape.N)
        return "rank " + std::to_string(s) + " sends expert " + std::to_string(e) + " more than N rows";
  }
  return "";
}

std::string llRefValidate(const llRefShape& shape, const std::vector<llRefRankInput>& inputs) {
  std::string p = llRefShapeProblem(shape);
  if (!p.empty()) return p;
  if (inputs.size() != static_cast<size_t>(shape.R)) return "inputs must hold one entry per rank";
  for (int s = 0; s < shape.R; s++) {
    p = llRefRankProblem(shape, inputs[s]);
    if (!p.empty()) return "rank " + std::to_string(s) + ": " + p;
  }
  return llRefCountProblem(shape, inputs);
}

static void llRefRequireValid(const llRefShape& shape, const std::vector<llRefRankInput>& inputs) {
  std::string p = llRefValidate(shape, inputs);
  if (!p.empty()) throw std::invalid_argument("llRef: " + p);
}

static void llRefRequireRank(const llRefShape& shape, int rank) {
  if (rank < 0 || rank >= shape.R) throw std::invalid_argument("llRef: rank out of [0, R)");
}

llRefPlan llRefMakePlan(const llRefShape& shape, const std::vector<llRefRankInput>& inputs) {
  llRefRequireValid(shape, inputs);
  llRefPlan plan;
  plan.row.resize(shape.R);
  plan.count.assign(shape.R, std::vector<int32_t>(shape.E, 0));
  int El = llRefLocalExperts(shape);
  std::vector<std::vector<int32_t>> index(shape.R);  // [s][t*K+k]: position among s's pairs for its expert
  for (int s = 0; s < shape.R; s++) {
    const std::vector<int64_t>& topk = inputs[s].topk;
    std::vector<int32_t> next(shape.E, 0);
    plan.row[s].assign(topk.size(), -1);
    index[s].assign(topk.size(), -1);
    for (size_t i = 0; i < topk.size(); i++) {
      if (topk[i] < 0) continue;
      index[s][i] = next[topk[i]]++;
      plan.count[s][topk[i]]++;
    }
  }
  // A source's block of expert e starts after the blocks of the sources before it in e's owner order.
  for (int s = 0; s < shape.R; s++) {
    const std::vector<int64_t>& topk = inputs[s].topk;
    for (size_t i = 0; i < topk.size(); i++) {
      if (topk[i] < 0) continue;
      int e = static_cast<int>(topk[i]), owner = e / El;
      int32_t begin = 0;
      for (int j = 0; llRefSourceAt(shape, owner, j) != s; j++) begin += plan.count[llRefSourceAt(shape, owner, j)][e];
      plan.row[s][i] = begin + index[s][i];
    }
  }
  return plan;
}

size_t llRefScaleOffset(const llRefShape& shape, int le, int row, int group) {
  size_t rows = llRefRowsPerExpert(shape);
  return (static_cast<size_t>(le) * llRefScaleGroups(shape) + group) * rows + row;
}

size_t llRefUe8m0Offset(const llRefShape& shape, int le, int row, int word) {
  size_t rows = llRefRowsPerExpert(shape);
  return (static_cast<size_t>(le) * llUe8m0Words(shape.H) + word) * rows + row;
}

void llRefQuantizeRow(const uint16_t* x, int H, bool roundScale, uint8_t* q, float* scales) {
  for (int g = 0; g < H / kLlQuantGroup; g++) {
    const uint16_t* xg = x + g * kLlQuantGroup;
    float amax = 0;
    for (int i = 0; i < kLlQuantGroup; i++) amax = std::fmax(amax, std::fabs(llBf16ToFloat(xg[i])));
    float inv = llQuantInvScale(amax, roundScale);
    scales[g] = llQuantScale(amax, roundScale);
    for (int i = 0; i < kLlQuantGroup; i++)
      q[g * kLlQuantGroup + i] = llFp8E4m3FromFloat(llBf16ToFloat(xg[i]) * inv);
  }
}

void llRefPackUe8m0(const float* scales, int groups, int32_t* words) {
  for (int p = 0; p < (groups + 3) / 4; p++) {
    uint32_t w = 0;
    for (int j = 0; j < 4 && 4 * p + j < groups; j++)
      w |= static_cast<uint32_t>(llUe8m0Byte(scales[4 * p + j])) << (8 * j);
    words[p] = static_cast<int32_t>(w);
  }
}

static void llRefAllocate(const llRefShape& shape, llRefPayload payload, llRefDispatchOut& out) {
  size_t El = llRefLocalExperts(shape), rows = llRefRowsPerExpert(shape);
  out.payload = payload;
  out.recvCount.assign(El, 0);
  out.layoutRange.assign(El * shape.R, 0);
  out.srcInfo.assign(El * rows, -1);
  if (payload == llRefPayload::kBf16) {
    out.xBf16.assign(El * rows * shape.H, 0);
    return;
  }
  out.xFp8.assign(El * rows * shape.H, 0);
  if (payload == llRefPayload::kFp8Ue8m0)
    out.scalesUe8m0.assign(El * llUe8m0Words(shape.H) * rows, 0);
  else
    out.scales.assign(El * llRefScaleGroups(shape) * rows, 0.0f);
}

// Writes the payload of token x (H bf16) into row `row` of local expert le.
static void llRefWriteRow(const llRefShape& shape, const uint16_t* x, int le, int row,
                          llRefDispatchOut& out) {
  size_t at = (static_cast<size_t>(le) * llRefRowsPerExpert(shape) + row) * shape.H;
  if (out.payload == llRefPayload::kBf16) {
    std::memcpy(&out.xBf16[at], x, shape.H * sizeof(uint16_t));
    return;
  }
  int groups = llRefScaleGroups(shape);
  std::vector<float> scales(groups);
  llRefQuantizeRow(x, shape.H, out.payload != llRefPayload::kFp8, &out.xFp8[at], scales.data());
  if (out.payload != llRefPayload::kFp8Ue8m0) {
    for (int g = 0; g < groups; g++) out.scales[llRefScaleOffset(shape, le, row, g)] = scales[g];
    return;
  }
  std::vector<int32_t> words(llUe8m0Words(shape.H));
  llRefPackUe8m0(scales.data(), groups, words.data());
  for (size_t w = 0; w < words.size(); w++)
    out.scalesUe8m0[llRefUe8m0Offset(shape, le, row, static_cast<int>(w))] = words[w];
}

static void llRefWriteLayout(const llRefShape& shape, const llRefPlan& plan, int rank,
                             llRefDispatchOut& out) {
  int El = llRefLocalExperts(shape);
  for (int le = 0; le < El; le++) {
    int e = rank * El + le;
    int64_t begin = 0;
    for (int i = 0; i < shape.R; i++) {
      int s = llRefSourceAt(shape, rank, i);
      int64_t count = plan.count[s][e];
      out.layoutRange[static_cast<size_t>(le) * shape.R + s] = (begin << 32) | count;
      begin += count;
    }
    out.recvCount[le] = static_cast<int32_t>(begin);
  }
}

llRefDispatchOut llRefDispatch(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                               int rank, llRefPayload payload) {
  llRefRequireRank(shape, rank);
  llRefPlan plan = llRefMakePlan(shape, inputs);
  llRefDispatchOut out;
  llRefAllocate(shape, payload, out);
  llRefWriteLayout(shape, plan, rank, out);
  int El = llRefLocalExperts(shape), K = shape.K;
  for (int s = 0; s < shape.R; s++) {
    const llRefRankInput& in = inputs[s];
    for (int t = 0; t < in.T; t++) {
      for (int k = 0; k < K; k++) {
        int64_t e = in.topk[static_cast<size_t>(t) * K + k];
        if (e < 0 || e / El != rank) continue;
        int le = static_cast<int>(e % El), row = plan.row[s][static_cast<size_t>(t) * K + k];
        out.srcInfo[static_cast<size_t>(le) * llRefRowsPerExpert(shape) + row] = t;
        llRefWriteRow(shape, &in.x[static_cast<size_t>(t) * shape.H], le, row, out);
      }
    }
  }
  return out;
}

float llRefRowScale(const llRefShape& shape, const llRefDispatchOut& out, int le, int row, int g) {
  if (out.payload != llRefPayload::kFp8Ue8m0) return out.scales[llRefScaleOffset(shape, le, row, g)];
  uint32_t word = static_cast<uint32_t>(out.scalesUe8m0[llRefUe8m0Offset(shape, le, row, g / 4)]);
  return llUe8m0ToFloat(static_cast<uint8_t>(word >> (8 * (g % 4))));
}

std::vector<float> llRefDequantRow(const llRefShape& shape, const llRefDispatchOut& out, int le, int row) {
  size_t at = (static_cast<size_t>(le) * llRefRowsPerExpert(shape) + row) * shape.H;
  std::vector<float> v(shape.H);
  for (int h = 0; h < shape.H; h++) {
    if (out.payload == llRefPayload::kBf16)
      v[h] = llBf16ToFloat(out.xBf16[at + h]);
    else
      v[h] = llFp8E4m3ToFloat(out.xFp8[at + h]) * llRefRowScale(shape, out, le, row, h / kLlQuantGroup);
  }
  return v;
}

llRefCombineOut llRefCombine(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                             int rank, const llRefRowFn& y) {
  llRefRequireRank(shape, rank);
  llRefPlan plan = llRefMakePlan(shape, inputs);
  const llRefRankInput& in = inputs[rank];
  int El = llRefLocalExperts(shape), K = shape.K, H = shape.H;
  llRefCombineOut res;
  res.out.assign(static_cast<size_t>(in.T) * H, 0.0);
  for (int t = 0; t < in.T; t++) {
    double* o = &res.out[static_cast<size_t>(t) * H];
    for (int k = 0; k < K; k++) {
      size_t i = static_cast<size_t>(t) * K + k;
      if (in.topk[i] < 0) continue;
      int e = static_cast<int>(in.topk[i]);
      const uint16_t* row = y(e / El, e % El, plan.row[rank][i]);
      for (int h = 0; h < H; h++) o[h] += static_cast<double>(in.weights[i]) * llBf16ToFloat(row[h]);
    }
  }
  res.outBf16.resize(res.out.size());
  for (size_t i = 0; i < res.out.size(); i++) res.outBf16[i] = llRefDoubleToBf16(res.out[i]);
  return res;
}

llRefCombineOut llRefCombine(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                             int rank, const std::vector<std::vector<uint16_t>>& y) {
  size_t rows = llRefRowsPerExpert(shape), perRank = llRefLocalExperts(shape) * rows * shape.H;
  if (y.size() != static_cast<size_t>(shape.R)) throw std::invalid_argument("llRef: y must hold R ranks");
  for (const std::vector<uint16_t>& yr : y)
    if (yr.size() != perRank) throw std::invalid_argument("llRef: y[r] is not [E_l, R*N, H]");
  return llRefCombine(shape, inputs, rank, [&](int r, int le, int row) {
    return &y[r][(le * rows + row) * shape.H];
  });
}

// Round to odd into fp32 (truncate, then set the last bit when inexact), then round to nearest even
// into bf16: fp32 keeps more than 8 + 2 significant bits, so this equals a single rounding of v.
uint16_t llRefDoubleToBf16(double v) {
  // Past FLT_MAX is past bf16's overflow threshold too (and the cast to float would be undefined).
  if (std::fabs(v) > FLT_MAX) return llFloatToBf16(v > 0 ? INFINITY : -INFINITY);
  float f = static_cast<float>(v);
  if (std::isnan(v) || static_cast<double>(f) == v) return llFloatToBf16(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) f = std::nextafter(f, 0.0f);
  return llFloatToBf16(llBitsFloat(llFloatBits(f) | 1u));
}

std::vector<double> llRefBf16ToDouble(const std::vector<uint16_t>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); i++) d[i] = llBf16ToFloat(v[i]);
  return d;
}

static void llRefRequireSameSize(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw std::invalid_argument("llRef: compared vectors differ in size");
}

double llRefCalcDiff(const std::vector<double>& a, const std::vector<double>& b) {
  llRefRequireSameSize(a, b);
  double ab = 0, sq = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return NAN;
    ab += a[i] * b[i];
    sq += a[i] * a[i] + b[i] * b[i];
  }
  return sq == 0 ? 0.0 : 1.0 - 2.0 * ab / sq;
}

llRefMaxDiff llRefMaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  llRefRequireSameSize(a, b);
  llRefMaxDiff d;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      d.anyNaN = true;
      continue;
    }
    double diff = std::fabs(a[i] - b[i]);
    if (diff > d.maxAbs) {
      d.maxAbs = diff;
      d.index = i;
    }
  }
  return d;
}

// splitmix64: tiny, and its output is the same on every platform (std distributions are not).
struct llRefRng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  // Irwin-Hall sum of four uniforms, centred and scaled to unit variance: normal-ish, pure arithmetic.
  double normalish() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * std::sqrt(3.0); }
};

// A non-zero finite bf16: zeros are nudged so that no group is all zero.
static void llRefFillX(const llRefShape& shape, llRefRng& rng, llRefRankInput& in) {
  in.x.resize(static_cast<size_t>(in.T) * shape.H);
  for (size_t g = 0; g < in.x.size() / kLlQuantGroup; g++) {
    double magnitude = std::ldexp(1.0, rng.below(17) - 8);
    for (int i = 0; i < kLlQuantGroup; i++) {
      uint16_t b = llFloatToBf16(static_cast<float>(rng.normalish() * magnitude));
      in.x[g * kLlQuantGroup + i] = (b & 0x7fffu) ? b : llFloatToBf16(static_cast<float>(magnitude));
    }
  }
}

// K distinct experts by a partial Fisher-Yates shuffle.
static void llRefPickDistinct(const llRefShape& shape, llRefRng& rng, int64_t* topk) {
  std::vector<int64_t> experts(shape.E);
  for (int e = 0; e < shape.E; e++) experts[e] = e;
  for (int k = 0; k < shape.K; k++) {
    std::swap(experts[k], experts[k + rng.below(shape.E - k)]);
    topk[k] = experts[k];
  }
}

static void llRefPickTopk(const llRefShape& shape, const llRefGenOptions& o, llRefRng& rng,
                          std::vector<int>& count, int64_t* topk) {
  int hotK = rng.below(shape.K);
  if (o.distinctExperts && !o.allToOneExpert) llRefPickDistinct(shape, rng, topk);
  for (int k = 0; k < shape.K; k++) {
    if (o.allToOneExpert) topk[k] = (!o.distinctExperts || k == hotK) ? o.hotExpert : -1;
    else if (!o.distinctExperts) topk[k] = rng.below(shape.E);
    if (rng.uniform() < o.fractionMinusOne) topk[k] = -1;
    if (topk[k] >= 0 && ++count[topk[k]] > shape.N) {  // only reachable with duplicates
      count[topk[k]]--;
      topk[k] = -1;
    }
  }
}

std::vector<llRefRankInput> llRefMakeInputs(const llRefShape& shape, uint64_t seed,
                                            const llRefGenOptions& options) {
  std::string p = llRefShapeProblem(shape);
  if (p.empty() && options.distinctExperts && !options.allToOneExpert && shape.K > shape.E)
    p = "distinct experts need K <= E";
  if (p.empty() && options.allToOneExpert && (options.hotExpert < 0 || options.hotExpert >= shape.E))
    p = "hotExpert out of [0, E)";
  if (!p.empty()) throw std::invalid_argument("llRef: " + p);
  llRefRng rng{seed};
  std::vector<llRefRankInput> inputs(shape.R);
  for (llRefRankInput& in : inputs) {
    in.T = options.raggedT ? rng.below(shape.N + 1) : shape.N;
    llRefFillX(shape, rng, in);
    in.topk.resize(static_cast<size_t>(in.T) * shape.K);
    in.weights.resize(in.topk.size());
    std::vector<int> count(shape.E, 0);
    for (int t = 0; t < in.T; t++)
      llRefPickTopk(shape, options, rng, count, &in.topk[static_cast<size_t>(t) * shape.K]);
    for (float& w : in.weights) w = static_cast<float>(0.05 + 0.95 * rng.uniform());
  }
  return inputs;
}
