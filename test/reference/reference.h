// CPU reference of llDispatch / llCombine (DESIGN.md, "The contract"): exact and simple, not fast.
// CPU tests check it against hand-computed values; GPU tests compare every kernel output with it.
//
// Row order: the rows of global expert e (owner rank r = e / E_l, local expert e % E_l) are the pairs
// (s, t, k) with topk_s[t][k] == e, ordered by source rank starting from the owner itself
// (s = r, r+1, ..., R-1, 0, ..., r-1: the owner's own tokens first, so it can place them directly),
// then token t, then k. llep's kernels produce exactly this order, so the GPU output can be compared
// row by row.
// Duplicates: an expert chosen twice in one token's top-k gets one row per (t, k) pair, so a source
// rank may send an expert more than T rows. Each (expert, source rank) has N slots in the receive
// buffer, so inputs where a source sends an expert more than N rows are invalid (llRefValidate).
//
// Invalid arguments throw std::invalid_argument with a one-line message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct llRefShape {
  int R;  // ranks
  int E;  // global experts, E % R == 0
  int N;  // max tokens per rank
  int H;  // hidden size, a multiple of 128
  int K;  // top-k
};

inline int llRefLocalExperts(const llRefShape& s) { return s.E / s.R; }
inline int llRefRowsPerExpert(const llRefShape& s) { return s.R * s.N; }  // R*N: the row capacity
inline int llRefScaleGroups(const llRefShape& s) { return s.H / 128; }

// One rank's dispatch input (host memory, row-major).
struct llRefRankInput {
  int T = 0;                     // tokens, 0..N
  std::vector<uint16_t> x;       // bf16 bits [T, H]
  std::vector<int64_t> topk;     // [T, K], values in [-1, E)
  std::vector<float> weights;    // [T, K]
};

enum class llRefPayload {
  kBf16,           // recv_x is a copy of x
  kFp8,            // e4m3, fp32 scales amax/448
  kFp8RoundScale,  // e4m3, fp32 power-of-two scales
  kFp8Ue8m0,       // e4m3, power-of-two scales packed as UE8M0 bytes in int32 words
};

// "" when the shape and inputs are valid, else what is wrong (first problem found).
std::string llRefValidate(const llRefShape& shape, const std::vector<llRefRankInput>& inputs);

// Where every pair lands.
struct llRefPlan {
  std::vector<std::vector<int32_t>> row;    // [s][t*K + k]: row in its expert's block, -1 for topk -1
  std::vector<std::vector<int32_t>> count;  // [s][e]: rows expert e receives from source rank s
};
// The i-th source rank in the row order of experts owned by rank `owner` (i = 0: the owner itself).
inline int llRefSourceAt(const llRefShape& s, int owner, int i) { return (owner + i) % s.R; }

llRefPlan llRefMakePlan(const llRefShape& shape, const std::vector<llRefRankInput>& inputs);

// Dispatch output of one receiving rank. Rows at or past recv_count hold 0 (src_info: -1); on the GPU
// those rows are unspecified.
struct llRefDispatchOut {
  llRefPayload payload = llRefPayload::kBf16;
  std::vector<int32_t> recvCount;    // [E_l]
  std::vector<int64_t> layoutRange;  // [E_l, R]: (begin << 32) | count, per source rank
  std::vector<int32_t> srcInfo;      // [E_l, R*N]: the row's token index on its source rank
  std::vector<uint16_t> xBf16;       // kBf16: [E_l, R*N, H]
  std::vector<uint8_t> xFp8;         // fp8 modes: e4m3 bytes [E_l, R*N, H]
  std::vector<float> scales;         // kFp8, kFp8RoundScale: storage [E_l, H/128, R*N]
  std::vector<int32_t> scalesUe8m0;  // kFp8Ue8m0: storage [E_l, ceil(H/512), R*N]
};
llRefDispatchOut llRefDispatch(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                               int rank, llRefPayload payload);

// Storage index of logical [le][row][group] in llRefDispatchOut::scales (token index fastest).
size_t llRefScaleOffset(const llRefShape& shape, int le, int row, int group);
// Storage index of logical [le][row][word] in llRefDispatchOut::scalesUe8m0.
size_t llRefUe8m0Offset(const llRefShape& shape, int le, int row, int word);

// Quantises one token of H bf16 values: q [H] e4m3 bytes, scales [H/128] (powers of two when
// roundScale).
void llRefQuantizeRow(const uint16_t* x, int H, bool roundScale, uint8_t* q, float* scales);
// Packs power-of-two scales [groups] into UE8M0 words [ceil(groups/4)].
void llRefPackUe8m0(const float* scales, int groups, int32_t* words);
// The scale of (le, row, group) in an fp8 output, whichever form the payload stores it in.
float llRefRowScale(const llRefShape& shape, const llRefDispatchOut& out, int le, int row, int group);
// Row `row` of local expert le as fp32: the bf16 values, or the fp8 values times their scales.
std::vector<float> llRefDequantRow(const llRefShape& shape, const llRefDispatchOut& out, int le, int row);

// Combine result of one source rank: [T, H].
struct llRefCombineOut {
  std::vector<double> out;        // sum over valid k of w * y, in fp64
  std::vector<uint16_t> outBf16;  // `out` rounded once to bf16
};
// Row `row` of local expert le on rank r of the expert outputs (H bf16 values).
using llRefRowFn = std::function<const uint16_t*(int r, int le, int row)>;
llRefCombineOut llRefCombine(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                             int rank, const llRefRowFn& y);
// y[r]: rank r's expert outputs, bf16 [E_l, R*N, H], laid out as its dispatch output.
llRefCombineOut llRefCombine(const llRefShape& shape, const std::vector<llRefRankInput>& inputs,
                             int rank, const std::vector<std::vector<uint16_t>>& y);

// fp64 to bf16 with one rounding (nearest, ties to even).
uint16_t llRefDoubleToBf16(double v);
std::vector<double> llRefBf16ToDouble(const std::vector<uint16_t>& v);

// 1 - 2*sum(a*b) / sum(a*a + b*b) in fp64; 0 when both are all zero; NaN when either holds a NaN,
// so `llRefCalcDiff(a, b) < tolerance` never passes a NaN.
double llRefCalcDiff(const std::vector<double>& a, const std::vector<double>& b);

struct llRefMaxDiff {
  double maxAbs = 0;  // max |a[i] - b[i]| over the non-NaN pairs
  size_t index = 0;   // where it occurs
  bool anyNaN = false;
};
llRefMaxDiff llRefMaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b);

// Deterministic random inputs (own generator: the same on every platform).
struct llRefGenOptions {
  double fractionMinusOne = 0;  // probability that a pair is -1
  bool raggedT = false;         // T_s uniform in [0, N]; otherwise T_s = N
  bool distinctExperts = true;  // a token's K experts differ (needs K <= E); else drawn independently,
                                // a pick that would give an expert more than N rows from this rank
                                // becoming -1
  bool allToOneExpert = false;  // every valid pair picks hotExpert: one pair per token at a random k,
                                // the others -1 (or all K, when !distinctExperts)
  int hotExpert = 0;
};
// x: per group of 128 a random power-of-two magnitude (2^-8..2^8) times a normal-ish value, never
// zero/NaN/inf; weights uniform in [0.05, 1).
std::vector<llRefRankInput> llRefMakeInputs(const llRefShape& shape, uint64_t seed,
                                            const llRefGenOptions& options = {});
