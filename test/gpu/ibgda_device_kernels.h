// The kernels of test_ibgda_device: many GPU threads post to one RC QP with ibgda_qp.h (RDMA writes, inline
// writes, fetch-adds, masked fetch-adds, then quiet), and one thread posts a write with a wrong rkey. The
// buffer layout and every value a rank sends are defined here, for the kernels and the host's checks alike.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "device/hd.h"

struct LlIbgdaQp;

namespace ibgdatest {

constexpr int kBlocks = 4;
constexpr int kThreadsPerBlock = 64;  // 2 warps per block
constexpr int kThreads = kBlocks * kThreadsPerBlock;
constexpr int kWritesPerThread = 3;
constexpr size_t kSlotBytes = 2048;  // room for one RDMA write, whose length varies in [1, kSlotBytes]

// The registered buffer, laid out the same on every rank. A rank writes into its peer's kInbound, kInline
// and kCounters; the device writes atomics' old values into the rank's own kResults.
constexpr size_t kInbound = 0;  // slot (thread, k): the peer's RDMA write
constexpr size_t kSource = kInbound + (size_t)kThreads * kWritesPerThread * kSlotBytes;  // what this rank sends
constexpr size_t kInline = kSource + (size_t)kThreads * kWritesPerThread * kSlotBytes;  // 16 B per thread:
                                                                                       // 4 B at 0, 8 B at 8
constexpr size_t kCounters = kInline + 16 * (size_t)kThreads;  // the fetch-add, masked 32 and 64 words
constexpr size_t kFetchAddWord = kCounters, kMasked32Word = kCounters + 8, kMasked64Word = kCounters + 16;
constexpr size_t kResults = kCounters + 64;  // 16 B per thread: the fetch-add's old value, the masked one's
constexpr size_t kUntouched = kResults + 16 * (size_t)kThreads;  // only the wrong-rkey write aims here
constexpr size_t kBufferBytes = 8u << 20;
static_assert(kUntouched + 4096 <= kBufferBytes, "the layout fits the buffer");

constexpr uint8_t kPoison = 0xa5;  // every byte no one writes

LL_HD inline size_t slot(int thread, int k) { return ((size_t)thread * kWritesPerThread + k) * kSlotBytes; }
LL_HD inline uint32_t writeLen(int thread, int k) { return 1 + (uint32_t)(thread * 97 + k * 1031) % kSlotBytes; }

LL_HD inline uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  return x ^ (x >> 16);
}

// Distinct per sender, thread, write and byte, so a byte in the wrong place or from the wrong rank shows.
LL_HD inline uint8_t sourceByte(int rank, int thread, int k, size_t i) {
  return (uint8_t)mix((uint32_t)rank * 0x9e3779b9u ^ (uint32_t)thread << 12 ^ (uint32_t)k << 28 ^ (uint32_t)i);
}
LL_HD inline uint32_t inline4(int rank, int thread) { return mix(0x44000000u + (uint32_t)rank * 4096 + thread); }
LL_HD inline uint64_t inline8(int rank, int thread) {
  return (uint64_t)mix(0x88000000u + (uint32_t)rank * 4096 + thread) << 32 | mix(0x8800f000u + thread * 3 + rank);
}

// Every thread adds kFetchAdd to the peer's fetch-add word (the high half catches a 32-bit truncation).
constexpr uint64_t kFetchAdd = (1ull << 32) + 3;
// Even threads post a masked fetch-add to the 32-bit word, odd threads to the 64-bit one: each adds 1 to
// both halves. The low half starts just below its top so that it wraps, and its carry must not reach the
// high half (the boundary bit marks each half's most significant bit).
constexpr uint32_t kMasked32Add = 0x00010001u, kMasked32Boundary = 0x80008000u, kMasked32Start = 0x0000fff0u;
constexpr uint64_t kMasked64Add = 0x0000000100000001ull, kMasked64Boundary = 0x8000000080000000ull,
                   kMasked64Start = 0x00000000fffffff0ull;

struct TrafficArgs {
  LlIbgdaQp* qp;    // GPU memory: this rank's QP to its peer
  uint64_t local;   // this rank's buffer (a device address)
  uint32_t lkey;
  uint64_t remote;  // the peer's buffer
  uint32_t rkey;
  int rank;
};

struct BadWriteResult {
  uint32_t finished;        // 1 once the posting thread returned from quiet
  uint32_t syndrome;        // what llIbgdaQuiet returned
  uint32_t errWqeCounter;   // the QP's record of the failed WQE
  uint32_t postedCounter;   // the low 16 bits of the posted WQE's first WQEBB
};

// Each runs on `stream` and returns the launch's error. Waits inside ibgda_qp.h end timeoutNs after the
// launch: the waiting thread then gives up and exits (spinTimeouts counts it), so a device that stops
// answering ends the kernel instead of hanging it.
//
// Every thread posts kWritesPerThread RDMA writes, two inline writes, a fetch-add and a masked fetch-add to
// the peer, then quiets; its quiet's return lands in syndromes[thread] (GPU memory, kThreads words).
cudaError_t launchTraffic(const TrafficArgs& args, uint32_t* syndromes, uint64_t timeoutNs, cudaStream_t stream);
// One thread writes 64 bytes from kSource to the peer's kUntouched with `rkey` in place of the peer's, then
// quiets; *result is GPU memory.
cudaError_t launchBadRkeyWrite(const TrafficArgs& args, uint32_t rkey, BadWriteResult* result, uint64_t timeoutNs,
                               cudaStream_t stream);
// Threads that gave up waiting in the last launch; read once it has ended.
cudaError_t spinTimeouts(unsigned* count);

}  // namespace ibgdatest
