// Where everything lives inside one rank's symmetric buffer. Every rank computes the same layout from
// (N, H, R, E, K), so an offset valid here is valid in every peer's buffer.
//
// The buffer holds two halves that alternate between calls (the double-buffer rule); each half has
//   signals  : one 64-bit word per (local expert, source rank) for dispatch and per (rank) for combine
//   send     : staging for what this rank sends (dispatch: N messages; combine/zero-copy: E_l*R*N rows)
//   recv     : what peers deliver (dispatch: E_l*R*N messages; combine: N*K rows of H bf16)
#pragma once

#include <cstddef>
#include <cstdint>

struct llBufferHalf {
  size_t signalOffset, signalBytes;
  size_t sendOffset, sendBytes;
  size_t recvOffset, recvBytes;
};

struct llBufferLayout {
  size_t dispatchMsgBytes;  // one token as dispatched: 16-byte header + bf16 payload (fp8 fits inside)
  size_t combineRowBytes;   // one bf16 row
  llBufferHalf half[2];
  size_t totalBytes;
};

constexpr size_t kLlBufferAlign = 4096;

llBufferLayout llBufferLayoutFor(int maxTokensPerRank, int hidden, int nranks, int numExperts, int maxTopk);
