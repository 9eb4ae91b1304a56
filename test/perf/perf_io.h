// The caller-owned device memory of the benchmark's calls, in the shapes llep.h gives, allocated once
// for the largest token count (the communicator's N).
#pragma once

#include <cstddef>
#include <cstdint>

#include "test/reference/reference.h"

struct llPerfIo {
  llPerfIo(const llRefShape& shape, bool fp8, size_t flushBytes);
  ~llPerfIo();
  llPerfIo(const llPerfIo&) = delete;
  llPerfIo& operator=(const llPerfIo&) = delete;

  // Device bytes this set needs for (shape, fp8): reported before allocating, since the largest runs
  // come close to the memory of a GPU that several ranks share.
  static size_t bytesFor(const llRefShape& shape, bool fp8, size_t flushBytes);

  llRefShape shape;
  bool fp8;
  uint16_t* x = nullptr;          // bf16 [N, H]
  int64_t* topk = nullptr;        // [N, K]
  float* weights = nullptr;       // [N, K]
  void* recvX = nullptr;          // [E_l, R*N, H], fp8 or bf16
  float* scales = nullptr;        // fp8 only: stored [E_l, H/128, R*N]
  int32_t* recvCount = nullptr;   // [E_l]
  int32_t* srcInfo = nullptr;     // [E_l, R*N]
  int64_t* layoutRange = nullptr; // [E_l, R]
  uint16_t* y = nullptr;          // the expert outputs combine reads: bf16 [E_l, R*N, H]
  uint16_t* out = nullptr;        // bf16 [N, H]
  // Outputs of the empty "align" dispatch, kept apart so that it never overwrites a live result.
  int32_t* alignCount = nullptr;
  int32_t* alignSrcInfo = nullptr;
  int64_t* alignLayout = nullptr;
  void* flush = nullptr;          // written between iterations to empty the L2
  size_t flushBytes;

  size_t rows() const { return static_cast<size_t>(shape.R) * shape.N; }  // R*N per local expert
  size_t localExperts() const { return static_cast<size_t>(shape.E / shape.R); }
  size_t recvRowBytes() const { return static_cast<size_t>(shape.H) * (fp8 ? 1 : 2); }

 private:
  llPerfIo(const llRefShape& shape, bool fp8, size_t flushBytes, bool allocate);
};
