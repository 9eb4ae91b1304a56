// Big-endian field access at byte offsets: WQE and CQE fields are big-endian at fixed offsets, and
// reading them byte by byte keeps the model independent of host byte order and alignment.
#pragma once

#include <cstdint>

namespace llnic {

inline uint32_t loadBe32(const uint8_t* p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

inline uint64_t loadBe64(const uint8_t* p) { return ((uint64_t)loadBe32(p) << 32) | loadBe32(p + 4); }

inline void storeBe16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

inline void storeBe32(uint8_t* p, uint32_t v) {
  storeBe16(p, (uint16_t)(v >> 16));
  storeBe16(p + 2, (uint16_t)v);
}

}  // namespace llnic
