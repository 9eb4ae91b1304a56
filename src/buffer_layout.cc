#include "buffer_layout.h"

#include <algorithm>

#include "api.h"
#include "checks.h"
#include "config.h"

namespace {
size_t alignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }
}  // namespace

llBufferLayout llBufferLayoutFor(int N, int H, int R, int E) {
  llBufferLayout l{};
  l.dispatchMsgBytes = alignUp(kLlMsgHeaderBytes + 2 * (size_t)H, 16);
  l.combineRowBytes = 2 * (size_t)H;
  size_t n = (size_t)N, e = (size_t)E;
  l.dispatchSignalWord = 0;
  l.combineSignalWord = e;  // E_l * R dispatch words come first
  l.creditWord = e + (size_t)R;
  size_t signalBytes = alignUp((e + 2 * (size_t)R) * sizeof(uint64_t), kLlBufferAlign);
  // [E_l][R*N] combine rows = E*N; ibgda also stages a dispatch's messages here, up to N * K of them.
  size_t sendBytes = alignUp(std::max(e * n * l.combineRowBytes, n * LL_MAX_TOPK * l.dispatchMsgBytes), kLlBufferAlign);
  // Dispatch messages [E_l][R][N], or combine rows [N][kLlCombineSlotsPerToken] (more only when E < 16).
  size_t recvBytes = alignUp(std::max(e * n * l.dispatchMsgBytes, n * kLlCombineSlotsPerToken * l.combineRowBytes),
                             kLlBufferAlign);
  size_t off = 0;
  for (llBufferHalf& h : l.half) {
    h.signalOffset = off, h.signalBytes = signalBytes, off += signalBytes;
    h.sendOffset = off, h.sendBytes = sendBytes, off += sendBytes;
    h.recvOffset = off, h.recvBytes = recvBytes, off += recvBytes;
  }
  l.totalBytes = off;
  return l;
}

LL_API llResult_t llGetBufferSizeHint(int N, int H, int R, int E, size_t* bytes) {
  LL_REQUIRE(bytes != nullptr, llInvalidArgument, "llGetBufferSizeHint: bytes is NULL");
  LL_REQUIRE(R > 0, llInvalidArgument, "llGetBufferSizeHint: nranks = %d must be > 0", R);
  LL_REQUIRE(N > 0 && N <= kLlMaxTokensPerRank, llInvalidArgument,
             "llGetBufferSizeHint: maxTokensPerRank = %d is outside 1..%d", N, kLlMaxTokensPerRank);
  LL_REQUIRE(H > 0 && H % 128 == 0 && H <= kLlMaxHidden, llInvalidArgument,
             "llGetBufferSizeHint: hidden = %d is not a positive multiple of 128 up to %d", H, kLlMaxHidden);
  LL_REQUIRE(E > 0 && E <= kLlMaxExperts && E % R == 0, llInvalidArgument,
             "llGetBufferSizeHint: numExperts = %d is not in 1..%d and a multiple of nranks = %d", E,
             kLlMaxExperts, R);
  *bytes = llBufferLayoutFor(N, H, R, E).totalBytes;
  return llSuccess;
}
