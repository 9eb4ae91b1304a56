// What the NIC-model tests share: the PRM facts restated for the tests (WQE and CQE bytes are written
// and read here by hand, never with the library's encoders, so one mistake cannot pass both), the
// big-endian field writers, and aligned host memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace llnictest {

// Send opcodes and ctrl flags (MLX5_OPCODE_*, MLX5_WQE_CTRL_*), the inline flag (MLX5_INLINE_SEG).
constexpr uint8_t kOpNop = 0x00, kOpWrite = 0x08, kOpSend = 0x0a, kOpFetchAdd = 0x12, kOpMaskedFa = 0x15;
constexpr uint8_t kCqUpdate = 0x08, kFence = 0x80;
constexpr uint32_t kInlineFlag = 0x80000000u;
// Extended atomic opmod: 0x08 | (log2(operand bytes) - 2).
constexpr uint8_t kExt4 = 0x08, kExt8 = 0x09, kExt16 = 0x0a;
// CQE bytes (mlx5_cqe64 / mlx5_err_cqe) and CQE opcodes (MLX5_CQE_*).
constexpr size_t kCqeByteCnt = 44, kCqeVendor = 54, kCqeSyndrome = 55, kCqeOpcodeQpn = 56, kCqeCounter = 60,
                 kCqeOpOwn = 63;
constexpr uint8_t kCqeReq = 0x0, kCqeReqErr = 0xd, kCqeInvalid = 0xf;
// Syndromes (MLX5_CQE_SYNDROME_*).
constexpr uint8_t kLocalQpOp = 0x02, kLocalProt = 0x04, kFlush = 0x05, kRemoteInvalReq = 0x12,
                  kRemoteAccess = 0x13, kRetryExceeded = 0x15;

inline void putBe16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
inline void putBe32(uint8_t* p, uint32_t v) {
  putBe16(p, (uint16_t)(v >> 16));
  putBe16(p + 2, (uint16_t)v);
}
inline void putBe64(uint8_t* p, uint64_t v) {
  putBe32(p, (uint32_t)(v >> 32));
  putBe32(p + 4, (uint32_t)v);
}
inline uint16_t getBe16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
inline uint32_t getBe32(const uint8_t* p) { return (uint32_t)getBe16(p) << 16 | getBe16(p + 2); }

// Zeroed, 64-byte aligned host memory.
class Block {
 public:
  explicit Block(size_t bytes)
      : size_((bytes + 63) / 64 * 64), p_(static_cast<uint8_t*>(std::aligned_alloc(64, size_)), &std::free) {
    std::memset(p_.get(), 0, size_);
  }
  uint8_t* p() const { return p_.get(); }
  uint64_t addr() const { return (uint64_t)(uintptr_t)p_.get(); }
  size_t size() const { return size_; }

 private:
  size_t size_;
  std::unique_ptr<uint8_t, decltype(&std::free)> p_;
};

}  // namespace llnictest
