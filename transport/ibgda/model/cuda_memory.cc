#include "transport/ibgda/model/cuda_memory.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iterator>

namespace llnic {

namespace {

void* devPtr(uint64_t addr) { return reinterpret_cast<void*>(static_cast<uintptr_t>(addr)); }

// Atomics on device memory are a read, an add and a write, so they must not interleave. One lock for
// the whole process is enough: the GPU only polls the words the model updates atomically (signals,
// counters) and never writes them itself, and every atomic writer of this process's device memory is
// this process's responder, as peers' atomics arrive over the wire and run here. It covers every
// CudaMemory, so two of them on one GPU cannot race either.
std::mutex& atomicMutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

bool cudaDriverLoaded() {
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!driver) return false;
  dlclose(driver);
  return true;
}

bool cudaDeviceOf(uint64_t addr, int* device) {
  if (!cudaDriverLoaded()) return false;
  cudaPointerAttributes attributes{};
  const cudaError_t e = cudaPointerGetAttributes(&attributes, devPtr(addr));
  if (e != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (attributes.type != cudaMemoryTypeDevice) return false;
  *device = attributes.device;
  return true;
}

// ---- CudaMemory ------------------------------------------------------------------------------------

// Nothing can be reported from here; at process exit the runtime may already be gone, which the
// destroy call tolerates by returning an error.
CudaMemory::~CudaMemory() {
  if (stream_) cudaStreamDestroy(stream_);
}

bool CudaMemory::ok() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_.empty();
}

std::string CudaMemory::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

// Records the first failure. The runtime also keeps it as the thread's last error; that is cleared so
// it does not surface later in unrelated code that checks cudaGetLastError.
bool CudaMemory::check(int cudaError, const char* what, uint64_t addr, size_t len) {
  const cudaError_t e = static_cast<cudaError_t>(cudaError);
  if (e == cudaSuccess) return true;
  cudaGetLastError();
  char where[64] = "";
  if (len) std::snprintf(where, sizeof(where), " at 0x%" PRIx64 ", %zu bytes", addr, len);
  char msg[256];
  std::snprintf(msg, sizeof(msg), "CudaMemory(device %d): %s%s: %s (%s)", device_, what, where,
                cudaGetErrorString(e), cudaGetErrorName(e));
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_.empty()) error_ = msg;
  return false;
}

// The calling thread works on device_ from then on, and is not switched back. The model reaches memory
// from its own threads (the watcher, the wire's responder), which use CUDA for nothing else: switching
// them back to their default device 0 would create a context on GPU 0 in every rank of a multi-GPU job.
bool CudaMemory::onDevice() {
  int current = -1;
  if (!check(cudaGetDevice(&current), "cudaGetDevice", 0, 0)) return false;
  return current == device_ || check(cudaSetDevice(device_), "cudaSetDevice", 0, 0);
}

CUstream_st* CudaMemory::stream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stream_ || streamFailed_) return stream_;
  }
  cudaStream_t s = nullptr;
  const bool made =
      onDevice() && check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate", 0, 0);
  std::lock_guard<std::mutex> lock(mutex_);
  if (stream_) {  // another thread made one meanwhile
    if (s) cudaStreamDestroy(s);
  } else {
    stream_ = s;
    streamFailed_ = !made;
  }
  return stream_;
}

bool CudaMemory::toHost(void* dst, uint64_t addr, size_t len) {
  cudaStream_t s = stream();
  const bool done = s && onDevice() &&
                    check(cudaMemcpyAsync(dst, devPtr(addr), len, cudaMemcpyDeviceToHost, s),
                          "cudaMemcpyAsync(device to host)", addr, len) &&
                    check(cudaStreamSynchronize(s), "cudaStreamSynchronize", addr, len);
  if (!done) std::memset(dst, 0, len);
  return done;
}

bool CudaMemory::toDevice(uint64_t addr, const void* src, size_t len) {
  cudaStream_t s = stream();
  return s && onDevice() &&
         check(cudaMemcpyAsync(devPtr(addr), src, len, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync(host to device)",
               addr, len) &&
         check(cudaStreamSynchronize(s), "cudaStreamSynchronize", addr, len);
}

void CudaMemory::read(uint64_t addr, void* dst, size_t len) { toHost(dst, addr, len); }

void CudaMemory::write(uint64_t addr, const void* src, size_t len) { toDevice(addr, src, len); }

// Each copy has completed before the call returns, so the reads of the WQEs that a doorbell record
// announces start only after the record was read: acquire order.
uint32_t CudaMemory::loadAcquire32(uint64_t addr) {
  uint32_t v = 0;
  toHost(&v, addr, sizeof(v));
  return v;
}

// Every earlier write (the rest of the CQE) has completed before this copy starts: release order.
void CudaMemory::storeRelease32(uint64_t addr, uint32_t value) { toDevice(addr, &value, sizeof(value)); }

uint64_t CudaMemory::fetchAdd64(uint64_t addr, uint64_t add) {
  std::lock_guard<std::mutex> lock(atomicMutex());
  uint64_t old = 0;
  if (!toHost(&old, addr, sizeof(old))) return 0;
  const uint64_t next = old + add;
  return toDevice(addr, &next, sizeof(next)) ? old : 0;
}

uint32_t CudaMemory::compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) {
  std::lock_guard<std::mutex> lock(atomicMutex());
  uint32_t seen = 0;
  if (!toHost(&seen, addr, sizeof(seen))) return 0;
  if (seen == expected && !toDevice(addr, &desired, sizeof(desired))) return 0;
  return seen;
}

uint64_t CudaMemory::compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) {
  std::lock_guard<std::mutex> lock(atomicMutex());
  uint64_t seen = 0;
  if (!toHost(&seen, addr, sizeof(seen))) return 0;
  if (seen == expected && !toDevice(addr, &desired, sizeof(desired))) return 0;
  return seen;
}

// ---- MemoryRouter ----------------------------------------------------------------------------------

Status MemoryRouter::add(uint64_t addr, uint64_t length, Memory& memory) {
  if (length == 0 || addr + length < addr) return Status::kInvalidArgument;
  std::lock_guard<std::mutex> lock(mutex_);
  auto next = ranges_.lower_bound(addr);
  if (next != ranges_.end() && next->first - addr < length) return Status::kInvalidArgument;
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (addr - prev->first < prev->second.length) return Status::kInvalidArgument;
  }
  ranges_[addr] = Range{length, &memory};
  return Status::kOk;
}

Status MemoryRouter::remove(uint64_t addr) {
  std::lock_guard<std::mutex> lock(mutex_);
  return ranges_.erase(addr) ? Status::kOk : Status::kNotFound;
}

// The lock is held only for the lookup: accesses through different memories do not wait on each other.
Memory& MemoryRouter::route(uint64_t addr, uint64_t len, uint64_t* served) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto next = ranges_.upper_bound(addr);
  if (next != ranges_.begin()) {
    auto in = std::prev(next);
    const uint64_t offset = addr - in->first;
    if (offset < in->second.length) {
      *served = std::min(len, in->second.length - offset);
      return *in->second.memory;
    }
  }
  *served = next == ranges_.end() ? len : std::min(len, next->first - addr);
  return fallback_;
}

Memory& MemoryRouter::route(uint64_t addr) {
  uint64_t served;
  return route(addr, 1, &served);
}

void MemoryRouter::read(uint64_t addr, void* dst, size_t len) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (uint64_t served = 0; len > 0; addr += served, out += served, len -= served)
    route(addr, len, &served).read(addr, out, served);
}

void MemoryRouter::write(uint64_t addr, const void* src, size_t len) {
  const uint8_t* in = static_cast<const uint8_t*>(src);
  for (uint64_t served = 0; len > 0; addr += served, in += served, len -= served)
    route(addr, len, &served).write(addr, in, served);
}

uint32_t MemoryRouter::loadAcquire32(uint64_t addr) { return route(addr).loadAcquire32(addr); }

void MemoryRouter::storeRelease32(uint64_t addr, uint32_t value) { route(addr).storeRelease32(addr, value); }

uint64_t MemoryRouter::fetchAdd64(uint64_t addr, uint64_t add) { return route(addr).fetchAdd64(addr, add); }

uint32_t MemoryRouter::compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) {
  return route(addr).compareSwap32(addr, expected, desired);
}

uint64_t MemoryRouter::compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) {
  return route(addr).compareSwap64(addr, expected, desired);
}

// ---- RegionRoutes ----------------------------------------------------------------------------------

std::vector<std::map<uint64_t, RegionRoutes::Range>::iterator> RegionRoutes::touching(uint64_t addr,
                                                                                      uint64_t end) {
  std::vector<std::map<uint64_t, Range>::iterator> found;
  auto it = ranges_.upper_bound(addr);
  if (it != ranges_.begin() && std::prev(it)->second.end > addr) --it;
  for (; it != ranges_.end() && it->first < end; ++it) found.push_back(it);
  return found;
}

std::vector<std::pair<uint64_t, uint64_t>> RegionRoutes::gaps(uint64_t addr, uint64_t end) {
  std::vector<std::pair<uint64_t, uint64_t>> found;
  uint64_t at = addr;
  for (auto it : touching(addr, end)) {
    if (it->first > at) found.emplace_back(at, it->first);
    at = std::max(at, it->second.end);
  }
  if (at < end) found.emplace_back(at, end);
  return found;
}

Status RegionRoutes::hold(uint64_t addr, uint64_t length, Memory& memory, uint64_t* hold) {
  if (length == 0 || addr + length < addr) return Status::kInvalidArgument;
  const uint64_t end = addr + length;
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it : touching(addr, end))
    if (it->second.memory != &memory) return Status::kInvalidArgument;
  std::vector<uint64_t> added;
  for (const auto& [from, to] : gaps(addr, end)) {
    // Gaps overlap no range, and ranges_ mirrors the router, so this holds; if not, undo and refuse.
    if (router_.add(from, to - from, memory) != Status::kOk) {
      for (uint64_t start : added) {
        router_.remove(start);
        ranges_.erase(start);
      }
      return Status::kInvalidArgument;
    }
    ranges_[from] = Range{to, &memory, 0};
    added.push_back(from);
  }
  std::vector<uint64_t> held;
  for (auto it : touching(addr, end)) {
    it->second.holders++;
    held.push_back(it->first);
  }
  *hold = nextHold_++;
  holds_[*hold] = std::move(held);
  return Status::kOk;
}

Status RegionRoutes::release(uint64_t hold) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto h = holds_.find(hold);
  if (h == holds_.end()) return Status::kNotFound;
  for (uint64_t start : h->second) {
    auto r = ranges_.find(start);
    if (--r->second.holders > 0) continue;
    router_.remove(start);  // present: ranges_ mirrors the router
    ranges_.erase(r);
  }
  holds_.erase(h);
  return Status::kOk;
}

}  // namespace llnic
