// Memory as the model's device sees it: an accessor for the bytes (host memory now, GPU memory later)
// and the protection domain's registered regions, which decide what a key may touch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "transport/ibgda/model/status.h"

namespace llnic {

// Every access the device makes: WQE and doorbell-record reads, CQE writes, data movement and
// atomics. Addresses are the device's view (here: host virtual addresses). Atomics work on host-order
// integers, which is how mlx5 treats the target word when the HCA answers atomics in host endianness
// (atomic_req_8B_endianness_mode, which mlx5_ib requires before it reports IB_ATOMIC_HCA).
class Memory {
 public:
  virtual ~Memory() = default;
  virtual void read(uint64_t addr, void* dst, size_t len) = 0;
  virtual void write(uint64_t addr, const void* src, size_t len) = 0;
  // Doorbell records are read with acquire semantics so the WQEs they announce are visible.
  virtual uint32_t loadAcquire32(uint64_t addr) = 0;
  // The last word of a CQE (which holds the owner bit) is stored with release semantics so a poller
  // that sees the new owner bit also sees the rest of the CQE.
  virtual void storeRelease32(uint64_t addr, uint32_t value) = 0;
  virtual uint64_t fetchAdd64(uint64_t addr, uint64_t add) = 0;
  // Return the value found (equal to `expected` when the swap happened).
  virtual uint32_t compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) = 0;
  virtual uint64_t compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) = 0;
};

// Host memory of this process: addresses are pointers.
class HostMemory final : public Memory {
 public:
  void read(uint64_t addr, void* dst, size_t len) override;
  void write(uint64_t addr, const void* src, size_t len) override;
  uint32_t loadAcquire32(uint64_t addr) override;
  void storeRelease32(uint64_t addr, uint32_t value) override;
  uint64_t fetchAdd64(uint64_t addr, uint64_t add) override;
  uint32_t compareSwap32(uint64_t addr, uint32_t expected, uint32_t desired) override;
  uint64_t compareSwap64(uint64_t addr, uint64_t expected, uint64_t desired) override;
};

// Access rights of a region; the values are those of ibv_access_flags.
enum Access : uint32_t {
  kAccessLocalWrite = 1,
  kAccessRemoteWrite = 2,
  kAccessRemoteRead = 4,
  kAccessRemoteAtomic = 8,
};

// mlx5 memory keys serve as both lkey and rkey; the model keeps them distinct fields for callers.
struct MemoryKeys {
  uint32_t lkey = 0;
  uint32_t rkey = 0;
};

enum class KeyCheck {
  kOk,
  kBadKey,       // no region has this key
  kOutOfBounds,  // [addr, addr + len) is not inside the region
  kNoAccess,     // the region lacks a needed right
};

// One protection domain: the regions registered in it and their keys.
class ProtectionDomain {
 public:
  // Verbs rules: remote write or atomic rights need local write as well; a region is never empty.
  Status registerRegion(uint64_t addr, uint64_t length, uint32_t access, MemoryKeys* keys);
  Status deregisterRegion(uint32_t key);
  // Whether `key` covers [addr, addr + len) with every right in `needed` (0: any registered region).
  KeyCheck check(uint32_t key, uint64_t addr, uint64_t len, uint32_t needed) const;

 private:
  struct Region {
    uint64_t addr;
    uint64_t length;
    uint32_t access;
  };
  mutable std::mutex mutex_;  // the wire's responder looks up keys while the host may register more
  std::unordered_map<uint32_t, Region> regions_;
  // Keys are (index << 8) | variant, like mlx5 mkeys. Indices start at 2 so no key is 0 or
  // MLX5_INVALID_LKEY (0x100), and are never reused, so a stale key stays invalid.
  uint32_t nextIndex_ = 2;
};

}  // namespace llnic
