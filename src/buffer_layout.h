// Where everything lives inside one rank's symmetric buffer. Every rank computes the same layout from
// (N, H, R, E), so an offset valid here is valid in every peer's buffer.
//
// Two halves alternate between calls (the double-buffer rule). Each half holds
//   signals : u64 words, written by peers with release semantics and tagged with the call's sequence
//             number, so no signal ever needs clearing between calls:
//               dispatch [E_l][R]  (local expert, source rank): (seq << 32) | rows sent
//               combine  [R]       (expert rank): seq, once all its rows for this rank are written
//               credit   [R]       (peer): seq of the last call on this half the peer has consumed,
//                                  which a sender waits for before reusing the half on that peer
//   send    : what this rank sends from (combine zero-copy: [E_l][R*N] rows of H bf16; ibgda stages
//             what it posts here: dispatch messages [N][K], combine rows [E_l][R*N])
//   recv    : what peers deliver: dispatch messages [E_l][R][N], or combine rows [N][16] (one per
//             (token, k) pair of this rank, kLlCombineSlotsPerToken apart)
#pragma once

#include <cstddef>
#include <cstdint>

#include "device/kernel_args.h"

struct llBufferHalf {
  size_t signalOffset, signalBytes;
  size_t sendOffset, sendBytes;
  size_t recvOffset, recvBytes;
};

struct llBufferLayout {
  size_t dispatchMsgBytes;  // one token as dispatched: 16-byte header + bf16 payload (fp8 + scales fit)
  size_t combineRowBytes;   // one bf16 row of H
  // Word indices inside a half's signal area.
  size_t dispatchSignalWord, combineSignalWord, creditWord;
  llBufferHalf half[2];
  size_t totalBytes;
};

constexpr size_t kLlBufferAlign = 4096;


llBufferLayout llBufferLayoutFor(int maxTokensPerRank, int hidden, int nranks, int numExperts);
