#include "test/perf/perf_io.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "test/perf/perf_common.h"

namespace {

// (pointer slot, bytes) of every array, so that sizing, allocation and freeing cannot drift apart.
struct Slot {
  void** ptr;
  size_t bytes;
};

std::vector<Slot> slotsOf(llPerfIo& io) {
  const llRefShape& s = io.shape;
  size_t N = s.N, H = s.H, K = s.K, R = s.R, El = io.localExperts(), cells = El * io.rows();
  return {
      {reinterpret_cast<void**>(&io.x), N * H * 2},
      {reinterpret_cast<void**>(&io.topk), N * K * sizeof(int64_t)},
      {reinterpret_cast<void**>(&io.weights), N * K * sizeof(float)},
      {&io.recvX, cells * io.recvRowBytes()},
      {reinterpret_cast<void**>(&io.scales), io.fp8 ? cells * (H / 128) * sizeof(float) : 0},
      {reinterpret_cast<void**>(&io.recvCount), El * sizeof(int32_t)},
      {reinterpret_cast<void**>(&io.srcInfo), cells * sizeof(int32_t)},
      {reinterpret_cast<void**>(&io.layoutRange), El * R * sizeof(int64_t)},
      {reinterpret_cast<void**>(&io.y), cells * H * 2},
      {reinterpret_cast<void**>(&io.out), N * H * 2},
      {reinterpret_cast<void**>(&io.alignCount), El * sizeof(int32_t)},
      {reinterpret_cast<void**>(&io.alignSrcInfo), cells * sizeof(int32_t)},
      {reinterpret_cast<void**>(&io.alignLayout), El * R * sizeof(int64_t)},
      {&io.flush, io.flushBytes},
  };
}

}  // namespace

size_t llPerfIo::bytesFor(const llRefShape& shape, bool fp8, size_t flushBytes) {
  llPerfIo sizing(shape, fp8, flushBytes, /*allocate=*/false);
  size_t total = 0;
  for (const Slot& s : slotsOf(sizing)) total += s.bytes;
  return total;
}

llPerfIo::llPerfIo(const llRefShape& s, bool f, size_t flushLen) : llPerfIo(s, f, flushLen, true) {}

llPerfIo::llPerfIo(const llRefShape& s, bool f, size_t flushLen, bool allocate)
    : shape(s), fp8(f), flushBytes(flushLen) {
  if (!allocate) return;
  for (const Slot& slot : slotsOf(*this)) {
    if (slot.bytes == 0) continue;
    cudaError_t err = cudaMalloc(slot.ptr, slot.bytes);
    if (err != cudaSuccess)
      llPerfDie("cudaMalloc of %.2f GiB for the benchmark's buffers failed: %s", slot.bytes / 1073741824.0,
                cudaGetErrorString(err));
  }
  PERF_CUDA(cudaMemset(flush, 0, flushBytes));  // read by the L2 flush: defined contents
  // The expert outputs must be finite before any check fills them (bf16 0x3C3C is about 0.0115).
  PERF_CUDA(cudaMemset(y, 0x3C, static_cast<size_t>(localExperts()) * rows() * shape.H * 2));
}

llPerfIo::~llPerfIo() {
  for (const Slot& slot : slotsOf(*this))
    if (*slot.ptr) cudaFree(*slot.ptr);
}
