// GPU memory behind the model: CudaMemory reaches one GPU's memory of this process through copies,
// and MemoryRouter lets one model serve host and device regions by sending each access to the memory
// that holds its address. Host code: this header needs no CUDA include path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/status.h"

struct CUstream_st;  // cudaStream_t, declared here so that users need not include CUDA headers

namespace llnic {

// Device memory of GPU `device` (addresses are device pointers). Every access is a copy on a private
// non-blocking stream, waited for before the call returns: a kernel that runs for as long as the
// model serves it (a persistent one that polls CQs) must not make the model's copies wait, which a
// plain cudaMemcpy on the legacy default stream would.
//
// Memory has no way to report a failed access, so a failed CUDA call is recorded here: ok() turns
// false and error() names the first failure. A failed read yields zeros, a failed atomic returns 0 and
// changes nothing. Without a GPU every access fails this way; constructing never does.
class CudaMemory final : public Memory {
 public:
  explicit CudaMemory(int device = 0) : device_(device) {}
  ~CudaMemory() override;
  CudaMemory(const CudaMemory&) = delete;
  CudaMemory& operator=(const CudaMemory&) = delete;

  void read(uint64_t addr, void* dst, size_t len) override;
  void write(uint64_t addr, const void* src, size_t len) override;
  uint32_t loadAcquire32(uint64_t addr) override;
  void storeRelease32(uint64_t addr, uint32_t value) override;
  uint64_t fetchAdd64(uint64_t addr, uint64_t add) override;
  uint32_t compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) override;
  uint64_t compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) override;

  bool ok() const;
  std::string error() const;

 private:
  CUstream_st* stream();  // created on first use; nullptr (and the error recorded) when that fails
  bool toHost(void* dst, uint64_t addr, size_t len);
  bool toDevice(uint64_t addr, const void* src, size_t len);
  bool check(int cudaError, const char* what, uint64_t addr, size_t len);

  const int device_;
  mutable std::mutex mutex_;  // guards stream_ and error_
  CUstream_st* stream_ = nullptr;
  bool streamFailed_ = false;
  std::string error_;
};

// Sends each access to the memory registered for its address range, and everything else to
// `fallback` (typically HostMemory, whose addresses are pointers). A read or write that spans ranges
// is split at their edges; an atomic or a 32-bit load/store goes to the memory holding its first byte
// (naturally aligned words never straddle a range that starts and ends at allocation boundaries).
class MemoryRouter final : public Memory {
 public:
  explicit MemoryRouter(Memory& fallback) : fallback_(fallback) {}

  // Routes [addr, addr + length) to `memory`, which must outlive the router. Ranges never overlap.
  Status add(uint64_t addr, uint64_t length, Memory& memory);
  Status remove(uint64_t addr);  // the range that starts at `addr`

  void read(uint64_t addr, void* dst, size_t len) override;
  void write(uint64_t addr, const void* src, size_t len) override;
  uint32_t loadAcquire32(uint64_t addr) override;
  void storeRelease32(uint64_t addr, uint32_t value) override;
  uint64_t fetchAdd64(uint64_t addr, uint64_t add) override;
  uint32_t compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) override;
  uint64_t compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) override;

 private:
  struct Range {
    uint64_t length;
    Memory* memory;
  };
  // The memory serving `addr`, and in *served how many of the `len` bytes from addr it serves.
  Memory& route(uint64_t addr, uint64_t len, uint64_t* served);
  Memory& route(uint64_t addr);

  Memory& fallback_;
  std::mutex mutex_;  // the responder thread routes while the host adds ranges
  std::map<uint64_t, Range> ranges_;  // by start address
};

}  // namespace llnic
