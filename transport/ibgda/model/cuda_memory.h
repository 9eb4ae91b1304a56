// GPU memory behind the model: CudaMemory reaches one GPU's memory of this process through copies,
// MemoryRouter lets one model serve host and device regions by sending each access to the memory that
// holds its address, and RegionRoutes keeps a router's ranges in step with registrations that may
// overlap. Host code: this header needs no CUDA include path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "transport/ibgda/model/memory.h"
#include "transport/ibgda/model/status.h"

struct CUstream_st;  // cudaStream_t, declared here so that users need not include CUDA headers

namespace llnic {

// Whether addr is CUDA device memory, and of which device. False for host memory (pageable, pinned or
// registered: the host reaches it through pointers) and managed memory, where there is no GPU or driver
// (the runtime's error is cleared, so it does not surface in unrelated code), and without asking CUDA in
// a process that has not loaded the driver, so that registering host memory never initialises CUDA.
bool cudaDeviceOf(uint64_t addr, int* device);

// Whether this process has loaded the CUDA driver. No memory is device memory in a process that has not:
// asking the runtime there would load and initialise it, which opens device files and creates a context,
// a cost (and descriptors left open) that a process using host memory only (the CPU tests, on a GPU
// machine too) must not get.
bool cudaDriverLoaded();

// Device memory of GPU `device` (addresses are device pointers). Every access is a copy on a private
// non-blocking stream, waited for before the call returns: a kernel that runs for as long as the
// model serves it (a persistent one that polls CQs) must not make the model's copies wait, which a
// plain cudaMemcpy on the legacy default stream would. An access leaves `device` the calling thread's
// current device (see onDevice): callers are threads of the model, not the application's.
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
  bool onDevice();
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

// The registered regions (UMEMs, MRs) of one model that live in device memory, routed through one
// MemoryRouter. Regions may overlap (a UMEM and an MR in one allocation, a buffer registered twice) while
// the router's ranges may not, and a range must not leave the router while another region still needs it.
// So a region adds the parts of itself that no range covers yet, and holds every range it touches; a range
// leaves when its last holder is released. Ranges are never split or merged, so an access in flight always
// finds its range (a range may outlive part of the region that made it, while another region holding it
// lives: both lie in one allocation, which stays device memory).
class RegionRoutes {
 public:
  explicit RegionRoutes(Memory& fallback) : router_(fallback) {}
  RegionRoutes(const RegionRoutes&) = delete;
  RegionRoutes& operator=(const RegionRoutes&) = delete;

  // What the model accesses memory through.
  Memory& memory() { return router_; }

  // Routes [addr, addr + length) to `memory` (which must outlive this) until release(*hold). Refused
  // (kInvalidArgument, nothing changed) when empty, wrapping, or overlapping a range of another memory.
  Status hold(uint64_t addr, uint64_t length, Memory& memory, uint64_t* hold);
  Status release(uint64_t hold);

 private:
  struct Range {
    uint64_t end;
    Memory* memory;
    uint32_t holders;
  };
  // The ranges that intersect [addr, end), by start address.
  std::vector<std::map<uint64_t, Range>::iterator> touching(uint64_t addr, uint64_t end);
  // The parts of [addr, end) that no range covers.
  std::vector<std::pair<uint64_t, uint64_t>> gaps(uint64_t addr, uint64_t end);

  MemoryRouter router_;
  std::mutex mutex_;  // host threads register and deregister concurrently
  std::map<uint64_t, Range> ranges_;  // exactly the router's ranges, by start address
  std::map<uint64_t, std::vector<uint64_t>> holds_;  // hold -> starts of the ranges it holds
  uint64_t nextHold_ = 1;
};

}  // namespace llnic
