// FP8 (e4m3) quantisation and bf16 conversion shared by the dispatch kernels and the CPU reference, so
// that both compute the documented scales and payload bit for bit. Included by .cu files and by plain
// C++ (g++ with the CUDA include path: <cuda_fp8.h> provides a host implementation of the conversion).
//
// Per group of kLlQuantGroup consecutive channels of one token:
//   amax  = max(max |x_i|, kLlAmaxFloor)
//   plain       : scale = amax / 448,  q_i = fp8(x_i * (448 / amax))   (two fp32 divisions, each once)
//   round scale : scale = amax / 448 rounded up to a power of two,  q_i = fp8(x_i * (1 / scale)) (exact)
//   UE8M0       : the round-scale power of two stored as its biased exponent byte (exponent + 127),
//                 four consecutive groups per int32, group 4p+j in byte j (little-endian).
// fp8() is e4m3, round to nearest even, saturating to +-448 (inf too); NaN stays NaN.
//
// Bitwise agreement between host and device needs IEEE fp32 division on the device: kernels that use
// these functions must not be built with -use_fast_math / -prec-div=false.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cuda_fp8.h>

#include "device/hd.h"

constexpr float kLlFp8Max = 448.0f;     // largest finite e4m3 value
constexpr int kLlQuantGroup = 128;      // channels sharing one scale
constexpr float kLlAmaxFloor = 1e-4f;   // keeps the scale non-zero for all-zero groups

LL_HD inline uint32_t llFloatBits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  memcpy(&b, &f, sizeof(b));
  return b;
#endif
}

LL_HD inline float llBitsFloat(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  memcpy(&f, &b, sizeof(f));
  return f;
#endif
}

LL_HD inline float llBf16ToFloat(uint16_t b) { return llBitsFloat(static_cast<uint32_t>(b) << 16); }

// Round to nearest, ties to even. A NaN is kept a (quiet) NaN: the rounding add could carry it into inf.
LL_HD inline uint16_t llFloatToBf16(float f) {
  uint32_t b = llFloatBits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40u);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

LL_HD inline uint8_t llFp8E4m3FromFloat(float f) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3));
}

// Two values at once (one instruction on the GPU), each rounded as llFp8E4m3FromFloat does: lo in the
// low byte.
LL_HD inline uint16_t llFp8E4m3x2FromFloats(float lo, float hi) {
  return static_cast<uint16_t>(__nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3));
}

// e4m3: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal (m * 2^-9);
// S.1111.111 is NaN and there is no inf.
LL_HD inline float llFp8E4m3ToFloat(uint8_t q) {
  uint32_t sign = static_cast<uint32_t>(q & 0x80u) << 24;
  uint32_t exp = (q >> 3) & 0xfu, man = q & 0x7u;
  if (exp == 0xfu && man == 0x7u) return llBitsFloat(sign | 0x7fc00000u);
  if (exp == 0) return llBitsFloat(llFloatBits(static_cast<float>(man) * (1.0f / 512.0f)) | sign);
  return llBitsFloat(sign | ((exp - 7u + 127u) << 23) | (man << 20));
}

// The smallest power of two >= s, for positive normal s. By bits rather than log2f/exp2f, whose
// host and device implementations may differ in the last place.
LL_HD inline float llPow2Ceil(float s) {
  uint32_t b = llFloatBits(s);
  if (b & 0x7fffffu) b = (b & 0xff800000u) + 0x800000u;
  return llBitsFloat(b);
}

LL_HD inline float llQuantClampAmax(float amax) { return fmaxf(amax, kLlAmaxFloor); }

// amax: max |x| over the group as fp32 (the floor is applied here). Returns the scale a dequantiser
// multiplies by.
LL_HD inline float llQuantScale(float amax, bool roundScale) {
  float s = llQuantClampAmax(amax) / kLlFp8Max;
  return roundScale ? llPow2Ceil(s) : s;
}

// The multiplier applied to x before the fp8 conversion. Plain: 448/amax, not 1/scale (one rounding
// instead of two). Round scale: 2^-k for scale 2^k, exact, built from the exponent field.
LL_HD inline float llQuantInvScale(float amax, bool roundScale) {
  if (!roundScale) return kLlFp8Max / llQuantClampAmax(amax);
  uint32_t exp = (llFloatBits(llQuantScale(amax, true)) >> 23) & 0xffu;
  return llBitsFloat((254u - exp) << 23);
}

// The UE8M0 byte of a power-of-two scale: its biased exponent (1.0 -> 127).
LL_HD inline uint8_t llUe8m0Byte(float pow2Scale) {
  return static_cast<uint8_t>((llFloatBits(pow2Scale) >> 23) & 0xffu);
}

LL_HD inline float llUe8m0ToFloat(uint8_t b) { return llBitsFloat(static_cast<uint32_t>(b) << 23); }

// int32 words of packed UE8M0 scales per token: ceil((H / 128) / 4); unused bytes of the last are 0.
LL_HD inline int llUe8m0Words(int hidden) { return (hidden / kLlQuantGroup + 3) / 4; }
