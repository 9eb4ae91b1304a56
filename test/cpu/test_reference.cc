// The CPU reference of dispatch/combine and the shared quantisation math, against hand-computed values
// and brute-force recounts. GPU tests trust this reference, so it is pinned down here first.
#include <cmath>
#include <stdexcept>

#include "device/fp8_quant.h"
#include "harness.h"
#include "test/reference/reference.h"

static uint16_t bf(float f) { return llFloatToBf16(f); }

// One group of 128 bf16 values: `head` first, zeros after.
static std::vector<uint16_t> group(std::vector<float> head) {
  std::vector<uint16_t> x(kLlQuantGroup, 0);
  for (size_t i = 0; i < head.size(); i++) x[i] = bf(head[i]);
  return x;
}

struct Quantized {
  std::vector<uint8_t> q;
  std::vector<float> scales;
};

static Quantized quantize(const std::vector<uint16_t>& x, bool roundScale) {
  Quantized r{std::vector<uint8_t>(x.size()), std::vector<float>(x.size() / kLlQuantGroup)};
  llRefQuantizeRow(x.data(), static_cast<int>(x.size()), roundScale, r.q.data(), r.scales.data());
  return r;
}

// A rank input from explicit top-k rows; x row t is filled with the value t + 1 (bf16-exact).
static llRefRankInput rankInput(const llRefShape& shape, std::vector<std::vector<int64_t>> topk,
                                std::vector<std::vector<float>> weights = {}) {
  llRefRankInput in;
  in.T = static_cast<int>(topk.size());
  for (int t = 0; t < in.T; t++) {
    in.x.insert(in.x.end(), shape.H, bf(static_cast<float>(t + 1)));
    in.topk.insert(in.topk.end(), topk[t].begin(), topk[t].end());
    std::vector<float> w = weights.empty() ? std::vector<float>(shape.K, 1.0f) : weights[t];
    in.weights.insert(in.weights.end(), w.begin(), w.end());
  }
  return in;
}

static int64_t rangeOf(int64_t begin, int64_t count) { return (begin << 32) | count; }

static size_t validPairs(const std::vector<llRefRankInput>& inputs) {
  size_t n = 0;
  for (const llRefRankInput& in : inputs)
    for (int64_t e : in.topk) n += e >= 0;
  return n;
}

// --- quantisation math ------------------------------------------------------------------------

LL_TEST(quant_amax_448_scale_one) {
  Quantized r = quantize(group({448.0f, -1.0f, 1.0625f, 0.5f}), false);
  EXPECT_EQ(r.scales[0], 1.0f);
  EXPECT_EQ(llQuantInvScale(448.0f, false), 1.0f);
  EXPECT_EQ(int(r.q[0]), 0x7e);  // 448: S.1111.110
  EXPECT_EQ(int(r.q[1]), 0xb8);  // -1: S.0111.000
  EXPECT_EQ(int(r.q[2]), 0x38);  // 1 + 2^-4 is the midpoint of 1 and 1.125: ties to even -> 1
  EXPECT_EQ(int(r.q[3]), 0x30);  // 0.5
  EXPECT_EQ(int(r.q[4]), 0x00);
}

LL_TEST(quant_amax_1_scale_1_over_448) {
  Quantized r = quantize(group({1.0f, -0.5f, 0.25f}), false);
  EXPECT_EQ(r.scales[0], 1.0f / 448.0f);
  EXPECT_EQ(llQuantInvScale(1.0f, false), 448.0f);
  EXPECT_EQ(int(r.q[0]), 0x7e);  // 448
  EXPECT_EQ(int(r.q[1]), 0xf6);  // -224 = -1.75 * 2^7
  EXPECT_EQ(int(r.q[2]), 0x6e);  // 112 = 1.75 * 2^6
}

LL_TEST(quant_saturates) {
  EXPECT_EQ(int(llFp8E4m3FromFloat(448.0f)), 0x7e);
  EXPECT_EQ(int(llFp8E4m3FromFloat(464.0f)), 0x7e);  // halfway to 480, which e4m3 spends on NaN
  EXPECT_EQ(int(llFp8E4m3FromFloat(1e6f)), 0x7e);
  EXPECT_EQ(int(llFp8E4m3FromFloat(-1e6f)), 0xfe);
  EXPECT_EQ(int(llFp8E4m3FromFloat(INFINITY)), 0x7e);
  EXPECT_EQ(int(llFp8E4m3FromFloat(-INFINITY)), 0xfe);
  EXPECT(std::isnan(llFp8E4m3ToFloat(llFp8E4m3FromFloat(NAN))));
}

LL_TEST(quant_amax_floor) {
  Quantized zero = quantize(group({}), false);
  EXPECT_EQ(zero.scales[0], 1e-4f / 448.0f);
  for (uint8_t q : zero.q) EXPECT_EQ(int(q), 0);
  Quantized tiny = quantize(group({5e-5f}), false);
  EXPECT_EQ(tiny.scales[0], 1e-4f / 448.0f);  // amax below the floor is clamped up to it
  float x = llBf16ToFloat(bf(5e-5f));
  EXPECT_EQ(int(tiny.q[0]), int(llFp8E4m3FromFloat(x * (448.0f / 1e-4f))));
  EXPECT_EQ(int(tiny.q[0]), 0x76);  // ~224
  EXPECT_EQ(llQuantScale(0.0f, true), 0x1p-22f);  // 1e-4/448 = 2.23e-7 lies in (2^-23, 2^-22]
  EXPECT_EQ(llQuantInvScale(0.0f, true), 0x1p22f);
}

LL_TEST(quant_round_scale) {
  EXPECT_EQ(llQuantScale(300.0f, true), 1.0f);  // 300/448 = 0.67 rounds up to 1
  EXPECT_EQ(llQuantInvScale(300.0f, true), 1.0f);
  EXPECT_EQ(llQuantScale(112.0f, true), 0.25f);  // exactly 0.25: already a power of two
  EXPECT_EQ(llQuantInvScale(112.0f, true), 4.0f);
  EXPECT_EQ(llQuantScale(448.0f, true), 1.0f);
  EXPECT_EQ(llQuantScale(449.0f, true), 2.0f);
  EXPECT_EQ(llQuantScale(1.0f, true), 0x1p-8f);  // 1/448 lies in (2^-9, 2^-8]
  EXPECT_EQ(llPow2Ceil(0x1.000002p0f), 2.0f);
  Quantized r = quantize(group({300.0f, -3.0f}), true);
  EXPECT_EQ(r.scales[0], 1.0f);
  EXPECT_EQ(int(r.q[0]), 0x79);  // 300 is nearer 288 = 1.125 * 2^8 than 320
  EXPECT_EQ(int(r.q[1]), 0xc4);  // -3 = -1.5 * 2^1
}

LL_TEST(ue8m0_bytes) {
  EXPECT_EQ(int(llUe8m0Byte(1.0f)), 127);
  EXPECT_EQ(int(llUe8m0Byte(0.25f)), 125);
  EXPECT_EQ(int(llUe8m0Byte(2.0f)), 128);
  EXPECT_EQ(int(llUe8m0Byte(0x1p-8f)), 119);
  EXPECT_EQ(llUe8m0ToFloat(125), 0.25f);
  EXPECT_EQ(llUe8m0Words(128), 1);
  EXPECT_EQ(llUe8m0Words(512), 1);
  EXPECT_EQ(llUe8m0Words(640), 2);
  EXPECT_EQ(llUe8m0Words(7168), 14);
}

// Rank 0 token 0 and rank 1 token 1 both go to expert 1 (rank 1, local expert 0): rows 0 and 1.
static llRefDispatchOut ue8m0Dispatch(const llRefShape& shape, const std::vector<uint16_t>& token) {
  std::vector<llRefRankInput> in = {rankInput(shape, {{1}, {-1}}), rankInput(shape, {{-1}, {1}})};
  std::copy(token.begin(), token.end(), in[0].x.begin());
  std::copy(token.begin(), token.end(), in[1].x.begin() + shape.H);
  return llRefDispatch(shape, in, 1, llRefPayload::kFp8Ue8m0);
}

static std::vector<uint16_t> groupsWithAmax(std::vector<float> amax) {
  std::vector<uint16_t> x;
  for (float a : amax) {
    std::vector<uint16_t> g = group({a, -a / 2});
    x.insert(x.end(), g.begin(), g.end());
  }
  return x;
}

LL_TEST(ue8m0_packing_h512) {
  llRefShape shape{2, 2, 2, 512, 1};
  llRefDispatchOut out = ue8m0Dispatch(shape, groupsWithAmax({448.0f, 112.0f, 896.0f, 1.0f}));
  EXPECT_EQ(out.scalesUe8m0.size(), size_t(1 * 1 * 4));
  for (int row = 0; row < 2; row++)  // bytes 127, 125, 128, 119, group j in byte j
    EXPECT_EQ(out.scalesUe8m0[llRefUe8m0Offset(shape, 0, row, 0)], int32_t(0x77807d7f));
  EXPECT_EQ(out.scalesUe8m0[2], 0);  // rows past recv_count
  EXPECT_EQ(out.scalesUe8m0[3], 0);
  EXPECT_EQ(int(out.xFp8[0]), 0x7e);  // 448 * (1/1)
  EXPECT_EQ(int(out.xFp8[128]), 0x7e);  // 112 * (1/0.25)
}

LL_TEST(ue8m0_packing_h640) {
  llRefShape shape{2, 2, 2, 640, 1};
  llRefDispatchOut out = ue8m0Dispatch(shape, groupsWithAmax({448.0f, 112.0f, 896.0f, 1.0f, 1792.0f}));
  EXPECT_EQ(out.scalesUe8m0.size(), size_t(2 * 4));  // [E_l=1, 2 words, R*N=4], token fastest
  EXPECT_EQ(llRefUe8m0Offset(shape, 0, 1, 1), size_t(5));
  for (int row = 0; row < 2; row++) {
    EXPECT_EQ(out.scalesUe8m0[llRefUe8m0Offset(shape, 0, row, 0)], int32_t(0x77807d7f));
    EXPECT_EQ(out.scalesUe8m0[llRefUe8m0Offset(shape, 0, row, 1)], int32_t(0x81));  // 1792/448 = 4
  }
}

LL_TEST(fp8_decode_all_codes) {
  EXPECT_EQ(llFp8E4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(llFp8E4m3ToFloat(0x38), 1.0f);
  EXPECT_EQ(llFp8E4m3ToFloat(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(llFp8E4m3ToFloat(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(llFp8E4m3ToFloat(0x07), 7 * 0x1p-9f);
  EXPECT(std::signbit(llFp8E4m3ToFloat(0x80)));
  EXPECT(std::isnan(llFp8E4m3ToFloat(0x7f)) && std::isnan(llFp8E4m3ToFloat(0xff)));
  for (int b = 0; b < 256; b++) {
    if ((b & 0x7f) == 0x7f) continue;
    EXPECT_MSG(llFp8E4m3FromFloat(llFp8E4m3ToFloat(b)) == b, "code 0x%02x", b);
    if (b > 0 && b < 0x7e) EXPECT(llFp8E4m3ToFloat(b) < llFp8E4m3ToFloat(b + 1));
  }
}

// Between adjacent codes: the exact midpoint goes to the even code, anything off it to the nearer one.
LL_TEST(fp8_round_nearest_even) {
  for (int b = 0; b < 0x7e; b++) {
    float lo = llFp8E4m3ToFloat(b), hi = llFp8E4m3ToFloat(b + 1), mid = (lo + hi) / 2;
    for (float sign : {1.0f, -1.0f}) {
      int s = sign < 0 ? 0x80 : 0;
      EXPECT_MSG(llFp8E4m3FromFloat(sign * mid) == ((b % 2 == 0 ? b : b + 1) | s), "mid of 0x%02x", b);
      EXPECT(llFp8E4m3FromFloat(sign * std::nextafter(mid, 0.0f)) == (b | s));
      EXPECT(llFp8E4m3FromFloat(sign * std::nextafter(mid, 1e9f)) == ((b + 1) | s));
    }
  }
}

// The source rank of a row, from the layout ranges.
static int sourceOf(const llRefShape& shape, const llRefDispatchOut& out, int le, int row) {
  for (int s = 0; s < shape.R; s++) {
    int64_t range = out.layoutRange[le * shape.R + s], begin = range >> 32, count = range & 0xffffffff;
    if (row >= begin && row < begin + count) return s;
  }
  return -1;
}

// Dequantised fp8 is within e4m3 precision of x: half an ulp, 2^-4 of the value, for normal codes
// (|x| / scale >= 2^-6); half the subnormal step 2^-9, times the scale, below that.
static void expectRoundTrip(const llRefShape& shape, const std::vector<llRefRankInput>& in,
                            const llRefDispatchOut& out) {
  for (int le = 0; le < llRefLocalExperts(shape); le++) {
    for (int row = 0; row < out.recvCount[le]; row++) {
      const llRefRankInput& src = in[sourceOf(shape, out, le, row)];
      const uint16_t* x = &src.x[out.srcInfo[le * llRefRowsPerExpert(shape) + row] * shape.H];
      std::vector<float> deq = llRefDequantRow(shape, out, le, row);
      for (int h = 0; h < shape.H; h++) {
        double v = llBf16ToFloat(x[h]), scale = llRefRowScale(shape, out, le, row, h / kLlQuantGroup);
        bool normal = std::fabs(v) >= 0x1p-6 * scale;
        double bound = normal ? 0x1p-4 * std::fabs(v) : 0x1p-10 * scale * (1 + 0x1p-20);
        EXPECT_MSG(std::fabs(deq[h] - v) <= bound, "x %g dequantised %g scale %g", v, deq[h], scale);
      }
    }
  }
}

LL_TEST(fp8_round_trip_error) {
  llRefShape shape{2, 4, 16, 512, 2};
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 11);
  for (llRefPayload p : {llRefPayload::kFp8, llRefPayload::kFp8RoundScale, llRefPayload::kFp8Ue8m0})
    for (int r = 0; r < shape.R; r++) expectRoundTrip(shape, in, llRefDispatch(shape, in, r, p));
}

LL_TEST(bf16_round_nearest_even) {
  auto fromBits = [](uint32_t b) { return llBitsFloat(b); };
  EXPECT_EQ(int(llFloatToBf16(1.0f)), 0x3f80);
  EXPECT_EQ(int(llFloatToBf16(-2.5f)), 0xc020);
  EXPECT_EQ(int(llFloatToBf16(fromBits(0x3f808000))), 0x3f80);  // tie, even stays
  EXPECT_EQ(int(llFloatToBf16(fromBits(0x3f818000))), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(int(llFloatToBf16(fromBits(0x3f808001))), 0x3f81);  // just past the tie
  EXPECT_EQ(int(llFloatToBf16(fromBits(0x3f807fff))), 0x3f80);
  EXPECT_EQ(int(llFloatToBf16(fromBits(0x7f7fffff))), 0x7f80);  // FLT_MAX rounds to inf
  EXPECT_EQ(int(llFloatToBf16(INFINITY)), 0x7f80);
  uint16_t nan = llFloatToBf16(fromBits(0x7f800001));  // a NaN whose payload sits in the dropped bits
  EXPECT(std::isnan(llBf16ToFloat(nan)));
  EXPECT_EQ(llBf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(llBf16ToFloat(0xc020), -2.5f);
  // fp64 -> bf16 rounds once: 1 + 2^-8 + 2^-40 is above the tie, though via fp32 it would be the tie.
  EXPECT_EQ(int(llRefDoubleToBf16(1.0 + 0x1p-8 + 0x1p-40)), 0x3f81);
  EXPECT_EQ(int(llRefDoubleToBf16(1.0 + 0x1p-8)), 0x3f80);
  EXPECT_EQ(int(llRefDoubleToBf16(-(1.0 + 0x1p-8 + 0x1p-40))), 0xbf81);
  EXPECT_EQ(int(llRefDoubleToBf16(1e300)), 0x7f80);
}

// --- dispatch layout --------------------------------------------------------------------------

// Brute force: the (s, t) of every row of global expert e, sources from e's owner on, then (t, k).
static std::vector<std::pair<int, int>> expectedRows(const llRefShape& shape,
                                                     const std::vector<llRefRankInput>& in, int e) {
  std::vector<std::pair<int, int>> rows;
  int owner = e / llRefLocalExperts(shape);
  for (int i = 0; i < shape.R; i++) {
    int s = (owner + i) % shape.R;
    for (int t = 0; t < in[s].T; t++)
      for (int k = 0; k < shape.K; k++)
        if (in[s].topk[t * shape.K + k] == e) rows.push_back({s, t});
  }
  return rows;
}

// Every layout output of every rank against the brute-force row list.
static void expectLayout(const llRefShape& shape, const std::vector<llRefRankInput>& in) {
  int El = llRefLocalExperts(shape), rowsPerExpert = llRefRowsPerExpert(shape);
  size_t total = 0;
  for (int r = 0; r < shape.R; r++) {
    llRefDispatchOut out = llRefDispatch(shape, in, r, llRefPayload::kBf16);
    for (int le = 0; le < El; le++) {
      std::vector<std::pair<int, int>> rows = expectedRows(shape, in, r * El + le);
      EXPECT_EQ(out.recvCount[le], int32_t(rows.size()));
      EXPECT(int(rows.size()) <= rowsPerExpert);
      total += rows.size();
      int64_t begin = 0;
      for (int i = 0; i < shape.R; i++) {  // contiguous, disjoint, own rank first, then the next ranks
        int s = (r + i) % shape.R;
        int64_t count = 0;
        for (auto& st : rows) count += st.first == s;
        EXPECT_EQ(out.layoutRange[le * shape.R + s], rangeOf(begin, count));
        begin += count;
      }
      for (int row = 0; row < rowsPerExpert; row++) {
        int expect = row < int(rows.size()) ? rows[row].second : -1;
        EXPECT_EQ(out.srcInfo[le * rowsPerExpert + row], expect);
        if (row < int(rows.size())) EXPECT_EQ(sourceOf(shape, out, le, row), rows[row].first);
      }
    }
  }
  EXPECT_EQ(total, validPairs(in));
}

LL_TEST(layout_random_inputs) {
  llRefShape shape{4, 16, 32, 128, 4};
  llRefGenOptions o;
  o.fractionMinusOne = 0.2;
  o.raggedT = true;
  for (uint64_t seed = 1; seed <= 3; seed++) expectLayout(shape, llRefMakeInputs(shape, seed, o));
}

// R=2, E=4 (E_l=2), K=2, hand-written routing and the srcInfo/layout it must give.
LL_TEST(layout_hand_example) {
  llRefShape shape{2, 4, 3, 128, 2};
  std::vector<llRefRankInput> in = {rankInput(shape, {{2, 0}, {-1, 2}, {3, 2}}),
                                    rankInput(shape, {{2, -1}, {0, 1}})};
  llRefDispatchOut r0 = llRefDispatch(shape, in, 0, llRefPayload::kBf16);
  llRefDispatchOut r1 = llRefDispatch(shape, in, 1, llRefPayload::kBf16);
  EXPECT(r0.recvCount == std::vector<int32_t>({2, 1}));  // expert 0: (0,0), (1,1); expert 1: (1,1)
  EXPECT(r1.recvCount == std::vector<int32_t>({4, 1}));  // expert 2: (0,0) (0,1) (0,2) (1,0); 3: (0,2)
  EXPECT(r0.layoutRange ==
         std::vector<int64_t>({rangeOf(0, 1), rangeOf(1, 1), rangeOf(0, 0), rangeOf(0, 1)}));
  // Rank 1 orders its own tokens first: expert 2 is (1,0) then (0,0) (0,1) (0,2).
  EXPECT(r1.layoutRange ==
         std::vector<int64_t>({rangeOf(1, 3), rangeOf(0, 1), rangeOf(0, 1), rangeOf(0, 0)}));
  EXPECT(r0.srcInfo == std::vector<int32_t>({0, 1, -1, -1, -1, -1, 1, -1, -1, -1, -1, -1}));
  EXPECT(r1.srcInfo == std::vector<int32_t>({0, 0, 1, 2, -1, -1, 2, -1, -1, -1, -1, -1}));
}

LL_TEST(minus_one_skipped) {
  llRefShape shape{2, 2, 3, 128, 2};
  std::vector<llRefRankInput> in = {rankInput(shape, {{-1, -1}, {1, -1}, {-1, 1}}),
                                    rankInput(shape, {{-1, -1}})};
  llRefDispatchOut out = llRefDispatch(shape, in, 1, llRefPayload::kBf16);
  EXPECT_EQ(out.recvCount[0], 2);
  EXPECT_EQ(out.srcInfo[0], 1);
  EXPECT_EQ(out.srcInfo[1], 2);
  EXPECT_EQ(out.layoutRange[1], rangeOf(0, 0));  // rank 1's own (empty) block comes first
  EXPECT(llRefDispatch(shape, in, 0, llRefPayload::kBf16).recvCount == std::vector<int32_t>({0}));
  llRefGenOptions o;
  o.fractionMinusOne = 0.5;
  expectLayout(llRefShape{2, 8, 16, 128, 4}, llRefMakeInputs(llRefShape{2, 8, 16, 128, 4}, 5, o));
}

LL_TEST(empty_ranks) {
  llRefShape shape{4, 8, 8, 128, 2};
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 21);
  for (int s : {1, 3}) in[s] = llRefRankInput{};
  for (int r = 0; r < shape.R; r++) {
    llRefDispatchOut out = llRefDispatch(shape, in, r, llRefPayload::kFp8);
    for (int le = 0; le < 2; le++) {
      EXPECT_EQ(out.layoutRange[le * 4 + 1] & 0xffffffff, 0);
      EXPECT_EQ(out.layoutRange[le * 4 + 3] & 0xffffffff, 0);
      // An empty source's block starts where the next source in rank r's order begins.
      int64_t next = out.layoutRange[le * 4 + 2] >> 32;
      if (r != 2) EXPECT_EQ(out.layoutRange[le * 4 + 1] >> 32, next);
    }
  }
  expectLayout(shape, in);
  for (llRefRankInput& r : in) r = llRefRankInput{};
  llRefDispatchOut none = llRefDispatch(shape, in, 2, llRefPayload::kBf16);
  EXPECT(none.recvCount == std::vector<int32_t>({0, 0}));
  for (int32_t v : none.srcInfo) EXPECT_EQ(v, -1);
  for (int64_t v : none.layoutRange) EXPECT_EQ(v, 0);
}

// One expert receives every token of every rank: exactly its R*N capacity.
LL_TEST(all_to_one_expert) {
  llRefShape shape{4, 8, 16, 128, 4};
  llRefGenOptions o;
  o.allToOneExpert = true;
  o.hotExpert = 5;  // rank 2, local expert 1
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 3, o);
  for (int r = 0; r < shape.R; r++) {
    llRefDispatchOut out = llRefDispatch(shape, in, r, llRefPayload::kBf16);
    EXPECT_EQ(out.recvCount[0], 0);
    EXPECT_EQ(out.recvCount[1], r == 2 ? llRefRowsPerExpert(shape) : 0);
  }
  llRefDispatchOut hot = llRefDispatch(shape, in, 2, llRefPayload::kBf16);
  // Rank 2's own tokens first, then ranks 3, 0, 1.
  for (int s = 0; s < shape.R; s++) EXPECT_EQ(hot.layoutRange[shape.R + s], rangeOf(16 * ((s + 2) % 4), 16));
  for (int row = 0; row < llRefRowsPerExpert(shape); row++) EXPECT_EQ(hot.srcInfo[64 + row], row % 16);
  expectLayout(shape, in);
}

// A duplicate expert in one token's top-k: one row per (t, k), adjacent; past N rows it is invalid.
LL_TEST(duplicate_expert_rows) {
  llRefShape shape{1, 4, 2, 128, 3};
  std::vector<llRefRankInput> in = {rankInput(shape, {{3, 1, 3}, {0, -1, -1}})};
  llRefDispatchOut out = llRefDispatch(shape, in, 0, llRefPayload::kBf16);
  EXPECT(out.recvCount == std::vector<int32_t>({1, 1, 0, 2}));
  EXPECT_EQ(out.srcInfo[3 * 2 + 0], 0);
  EXPECT_EQ(out.srcInfo[3 * 2 + 1], 0);
  llRefPlan plan = llRefMakePlan(shape, in);
  EXPECT(plan.row[0] == std::vector<int32_t>({0, 0, 1, 0, -1, -1}));
}

LL_TEST(duplicate_past_capacity_rejected) {
  llRefShape shape{1, 4, 2, 128, 3};
  std::vector<llRefRankInput> in = {rankInput(shape, {{3, 1, 3}, {3, -1, -1}})};
  EXPECT(llRefValidate(shape, in).find("more than N rows") != std::string::npos);
}

LL_TEST(bf16_payload_exact_copy) {
  llRefShape shape{2, 4, 8, 256, 2};
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 8, llRefGenOptions{0.1, true});
  for (int r = 0; r < shape.R; r++) {
    llRefDispatchOut out = llRefDispatch(shape, in, r, llRefPayload::kBf16);
    for (int le = 0; le < 2; le++) {
      for (int row = 0; row < llRefRowsPerExpert(shape); row++) {
        const uint16_t* got = &out.xBf16[(le * llRefRowsPerExpert(shape) + row) * shape.H];
        int t = out.srcInfo[le * llRefRowsPerExpert(shape) + row];
        std::vector<uint16_t> want(shape.H, 0);  // rows past recv_count are 0 in the reference
        if (t >= 0) {
          const uint16_t* x = &in[sourceOf(shape, out, le, row)].x[t * shape.H];
          want.assign(x, x + shape.H);
        }
        EXPECT(std::equal(want.begin(), want.end(), got));
      }
    }
  }
}

// Scales token-fastest; every fp8 row equals its token quantised on its own.
LL_TEST(fp8_payload_and_scale_storage) {
  llRefShape shape{2, 4, 3, 256, 2};
  EXPECT_EQ(llRefScaleOffset(shape, 1, 4, 1), size_t((1 * 2 + 1) * 6 + 4));
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 9);
  for (bool roundScale : {false, true}) {
    llRefDispatchOut out =
        llRefDispatch(shape, in, 1, roundScale ? llRefPayload::kFp8RoundScale : llRefPayload::kFp8);
    EXPECT_EQ(out.scales.size(), size_t(2 * 2 * 6));
    for (int le = 0; le < 2; le++) {
      for (int row = 0; row < out.recvCount[le]; row++) {
        int t = out.srcInfo[le * 6 + row];
        const uint16_t* x = &in[sourceOf(shape, out, le, row)].x[t * shape.H];
        Quantized q = quantize(std::vector<uint16_t>(x, x + shape.H), roundScale);
        EXPECT(std::equal(q.q.begin(), q.q.end(), &out.xFp8[(le * 6 + row) * shape.H]));
        for (int g = 0; g < 2; g++) EXPECT_EQ(out.scales[(le * 2 + g) * 6 + row], q.scales[g]);
      }
    }
  }
}

LL_TEST(invalid_inputs_rejected) {
  llRefShape shape{2, 4, 2, 128, 1};
  auto valid = [&] {
    return std::vector<llRefRankInput>{rankInput(shape, {{0}}), rankInput(shape, {{3}})};
  };
  EXPECT_EQ(llRefValidate(shape, valid()), std::string());
  std::vector<llRefRankInput> in = valid();
  in[1].topk[0] = 4;
  EXPECT(llRefValidate(shape, in).find("topk value 4") != std::string::npos);
  in = valid();
  in[0] = rankInput(shape, {{0}, {0}, {0}});
  EXPECT(llRefValidate(shape, in).find("T out of") != std::string::npos);
  in = valid();
  in[0].weights.clear();
  EXPECT(!llRefValidate(shape, in).empty());
  EXPECT(!llRefValidate(llRefShape{2, 4, 2, 100, 1}, valid()).empty());
  EXPECT(!llRefValidate(llRefShape{3, 4, 2, 128, 1}, valid()).empty());
  bool threw = false;
  try {
    llRefDispatch(shape, in, 0, llRefPayload::kBf16);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  EXPECT(threw);
}

// --- combine ----------------------------------------------------------------------------------

// y[r][le][row][h] = (row + 1 + 4 le + 8 r) * (1 + h % 2): small integers, exact in bf16.
static std::vector<std::vector<uint16_t>> patternY(const llRefShape& shape) {
  int El = llRefLocalExperts(shape), rows = llRefRowsPerExpert(shape);
  std::vector<std::vector<uint16_t>> y(shape.R);
  for (int r = 0; r < shape.R; r++)
    for (int le = 0; le < El; le++)
      for (int row = 0; row < rows; row++)
        for (int h = 0; h < shape.H; h++)
          y[r].push_back(bf(float((row + 1 + 4 * le + 8 * r) * (1 + h % 2))));
  return y;
}

static void expectRows(const llRefCombineOut& got, const llRefShape& shape, std::vector<double> base) {
  EXPECT_EQ(got.out.size(), base.size() * shape.H);
  for (size_t t = 0; t < base.size(); t++) {
    for (int h = 0; h < shape.H; h++) {
      double want = base[t] * (1 + h % 2);
      EXPECT_EQ(got.out[t * shape.H + h], want);
      EXPECT_EQ(got.outBf16[t * shape.H + h], bf(float(want)));
    }
  }
}

// R=2, E=4, K=2. Rows (owner's own tokens first): expert 1 <- (0,0,0); expert 2 (rank 1) <- (1,0,1)
// (0,0,1) (0,1,0); expert 3 <- (1,0,0).
LL_TEST(combine_hand_example) {
  llRefShape shape{2, 4, 2, 128, 2};
  std::vector<llRefRankInput> in = {rankInput(shape, {{1, 2}, {2, -1}}, {{0.5f, 0.25f}, {0.75f, 0.9f}}),
                                    rankInput(shape, {{3, 2}}, {{1.0f, 0.5f}})};
  std::vector<std::vector<uint16_t>> y = patternY(shape);
  expectRows(llRefCombine(shape, in, 0, y), shape, {0.5 * 5 + 0.25 * 10, 0.75 * 11});
  expectRows(llRefCombine(shape, in, 1, y), shape, {1.0 * 13 + 0.5 * 9});
}

// Each k of a duplicate expert reads its own row.
LL_TEST(combine_duplicate_expert) {
  llRefShape shape{1, 2, 2, 128, 2};
  std::vector<llRefRankInput> in = {rankInput(shape, {{1, 1}}, {{0.5f, 0.25f}})};
  expectRows(llRefCombine(shape, in, 0, patternY(shape)), shape, {0.5 * 5 + 0.25 * 6});
}

LL_TEST(combine_all_minus_one_is_zero) {
  llRefShape shape{2, 4, 4, 128, 2};
  llRefGenOptions o;
  o.fractionMinusOne = 1.0;
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 4, o);
  EXPECT_EQ(validPairs(in), size_t(0));
  llRefCombineOut got = llRefCombine(shape, in, 1, patternY(shape));
  EXPECT_EQ(got.out.size(), size_t(4 * 128));
  for (size_t i = 0; i < got.out.size(); i++) EXPECT(got.out[i] == 0 && got.outBf16[i] == 0);
}

// Experts that return their input: token t comes back as sum_k w_k * x[t].
LL_TEST(combine_of_dispatch_identity) {
  llRefShape shape{4, 8, 8, 256, 3};
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 17, llRefGenOptions{0.25, true});
  std::vector<std::vector<uint16_t>> y;
  for (int r = 0; r < shape.R; r++) y.push_back(llRefDispatch(shape, in, r, llRefPayload::kBf16).xBf16);
  for (int s = 0; s < shape.R; s++) {
    llRefCombineOut got = llRefCombine(shape, in, s, y);
    std::vector<double> want(got.out.size(), 0.0);
    const llRefRankInput& src = in[s];
    for (int t = 0; t < src.T; t++)
      for (int k = 0; k < shape.K; k++)
        if (src.topk[t * shape.K + k] >= 0)
          for (int h = 0; h < shape.H; h++)
            want[t * shape.H + h] +=
                double(src.weights[t * shape.K + k]) * llBf16ToFloat(src.x[t * shape.H + h]);
    EXPECT(got.out == want);
    EXPECT(llRefCalcDiff(llRefBf16ToDouble(got.outBf16), want) < 1e-5);
  }
}

// --- comparison helpers and the generator -----------------------------------------------------

LL_TEST(calc_diff_and_max_diff) {
  std::vector<double> a = {1, -2, 3.5}, neg = {-1, 2, -3.5}, zero = {0, 0, 0};
  EXPECT_EQ(llRefCalcDiff(a, a), 0.0);
  EXPECT_EQ(llRefCalcDiff(a, neg), 2.0);
  EXPECT_EQ(llRefCalcDiff(zero, zero), 0.0);
  EXPECT_EQ(llRefCalcDiff(a, zero), 1.0);
  std::vector<double> withNaN = {1, NAN, 3.5};
  double d = llRefCalcDiff(a, withNaN);
  EXPECT(std::isnan(d) && !(d < 1e-5));
  llRefMaxDiff m = llRefMaxAbsDiff(a, {1, -2.5, 3.5});
  EXPECT(m.maxAbs == 0.5 && m.index == 1 && !m.anyNaN);
  EXPECT(llRefMaxAbsDiff(a, withNaN).anyNaN);
  EXPECT(llRefMaxAbsDiff(withNaN, a).anyNaN);
}

static bool sameInputs(const std::vector<llRefRankInput>& a, const std::vector<llRefRankInput>& b) {
  for (size_t s = 0; s < a.size(); s++)
    if (a[s].T != b[s].T || a[s].x != b[s].x || a[s].topk != b[s].topk || a[s].weights != b[s].weights)
      return false;
  return a.size() == b.size();
}

LL_TEST(generator_deterministic_and_well_formed) {
  llRefShape shape{8, 16, 16, 256, 4};
  llRefGenOptions o{0.3, true};
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 42, o);
  EXPECT(sameInputs(in, llRefMakeInputs(shape, 42, o)));
  EXPECT(!sameInputs(in, llRefMakeInputs(shape, 43, o)));
  EXPECT_EQ(llRefValidate(shape, in), std::string());
  bool ragged = false;
  size_t pairs = 0, minusOne = 0;
  for (const llRefRankInput& r : in) {
    ragged |= r.T != in[0].T;
    for (int t = 0; t < r.T; t++)
      for (int k = 0; k < shape.K; k++) {
        int64_t e = r.topk[t * shape.K + k];
        pairs++;
        minusOne += e < 0;
        for (int j = 0; j < k; j++) EXPECT(e < 0 || r.topk[t * shape.K + j] != e);  // distinct
      }
    for (float w : r.weights) EXPECT(w >= 0.05f && w < 1.0f);
    for (size_t g = 0; g < r.x.size() / 128; g++) {
      bool nonZero = false;
      for (int i = 0; i < 128; i++) {
        float v = llBf16ToFloat(r.x[g * 128 + i]);
        EXPECT(std::isfinite(v));
        nonZero |= v != 0;
      }
      EXPECT(nonZero);
    }
  }
  EXPECT(ragged);
  EXPECT_MSG(std::fabs(double(minusOne) / pairs - 0.3) < 0.05, "-1 fraction %zu/%zu", minusOne, pairs);
}

// Independent picks repeat experts, yet never give an expert more than N rows from one rank.
LL_TEST(generator_duplicates_within_capacity) {
  llRefShape shape{1, 2, 4, 128, 4};
  llRefGenOptions o;
  o.distinctExperts = false;
  for (uint64_t seed = 0; seed < 20; seed++)
    EXPECT_EQ(llRefValidate(shape, llRefMakeInputs(shape, seed, o)), std::string());
  o.allToOneExpert = true;
  o.hotExpert = 1;
  std::vector<llRefRankInput> in = llRefMakeInputs(shape, 1, o);
  llRefPlan plan = llRefMakePlan(shape, in);
  EXPECT_EQ(plan.count[0][1], shape.N);
  EXPECT_EQ(validPairs(in), size_t(shape.N));
}

LL_TEST_MAIN()
