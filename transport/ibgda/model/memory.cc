#include "transport/ibgda/model/memory.h"

#include <cstring>

namespace llnic {

namespace {
template <typename T>
T* at(uint64_t addr) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(addr));
}

constexpr uint32_t kKeyVariant = 0x5a;  // the low byte of every key (the mkey "variant" field)
}  // namespace

void HostMemory::read(uint64_t addr, void* dst, size_t len) { std::memcpy(dst, at<const char>(addr), len); }

void HostMemory::write(uint64_t addr, const void* src, size_t len) { std::memcpy(at<char>(addr), src, len); }

uint32_t HostMemory::loadAcquire32(uint64_t addr) {
  return __atomic_load_n(at<uint32_t>(addr), __ATOMIC_ACQUIRE);
}

void HostMemory::storeRelease32(uint64_t addr, uint32_t value) {
  __atomic_store_n(at<uint32_t>(addr), value, __ATOMIC_RELEASE);
}

uint64_t HostMemory::fetchAdd64(uint64_t addr, uint64_t add) {
  return __atomic_fetch_add(at<uint64_t>(addr), add, __ATOMIC_SEQ_CST);
}

uint32_t HostMemory::compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) {
  __atomic_compare_exchange_n(at<uint32_t>(addr), &expected, desired, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  return expected;  // on failure the builtin stored the value it found here
}

uint64_t HostMemory::compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) {
  __atomic_compare_exchange_n(at<uint64_t>(addr), &expected, desired, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
  return expected;
}

Status ProtectionDomain::registerRegion(uint64_t addr, uint64_t length, uint32_t access, MemoryKeys* keys) {
  const uint32_t known = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead | kAccessRemoteAtomic;
  const bool needsLocalWrite = access & (kAccessRemoteWrite | kAccessRemoteAtomic);
  if (!keys || length == 0 || addr + length < addr || (access & ~known) ||
      (needsLocalWrite && !(access & kAccessLocalWrite)))
    return Status::kInvalidArgument;
  std::lock_guard<std::mutex> lock(mutex_);
  uint32_t key = (nextIndex_++ << 8) | kKeyVariant;
  regions_[key] = Region{addr, length, access};
  keys->lkey = keys->rkey = key;
  return Status::kOk;
}

Status ProtectionDomain::deregisterRegion(uint32_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  return regions_.erase(key) ? Status::kOk : Status::kNotFound;
}

KeyCheck ProtectionDomain::check(uint32_t key, uint64_t addr, uint64_t len, uint32_t needed) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = regions_.find(key);
  if (it == regions_.end()) return KeyCheck::kBadKey;
  const Region& r = it->second;
  // Written so that no sum can overflow: addr - r.addr is only formed once addr >= r.addr.
  if (addr < r.addr || len > r.length || addr - r.addr > r.length - len) return KeyCheck::kOutOfBounds;
  if ((r.access & needed) != needed) return KeyCheck::kNoAccess;
  return KeyCheck::kOk;
}

}  // namespace llnic
