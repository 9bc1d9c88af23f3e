// Scalar IEEE fp16 / bf16 conversions, bit-exact with numpy's astype and with F16C's
// _cvtss_sh(x, 0) (round to nearest even). `static inline` on purpose: this header is included
// by translation units compiled with different -m flags (see CMakeLists.txt).
#pragma once

#include <cstdint>
#include <cstring>

namespace fastllm {

static inline uint32_t fp32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

static inline float fp32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

static inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) return fp32_from_bits(sign | 0x7F800000u | (mantissa << 13));  // inf/nan
  if (exponent == 0) {
    if (mantissa == 0) return fp32_from_bits(sign);
    // Subnormal: normalise the mantissa.
    exponent = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    mantissa &= 0x3FFu;
    return fp32_from_bits(sign | (exponent << 23) | (mantissa << 13));
  }
  return fp32_from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

static inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = fp32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or nan (keep nan quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: add 0.5 (as a float) so the FPU does the RNE shift.
    const float magic = fp32_from_bits(0x3F000000u);  // 0.5
    const float value = fp32_from_bits(abs) + magic;
    return static_cast<uint16_t>(sign | (fp32_bits(value) - fp32_bits(magic)));
  }
  const uint32_t mantissa_odd = (abs >> 13) & 1u;
  uint32_t rounded = abs + 0xC8000FFFu + mantissa_odd;  // rebias exponent (-112 << 23) and round
  return static_cast<uint16_t>(sign | (rounded >> 13));
}

static inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(static_cast<uint32_t>(h) << 16); }

static inline uint16_t fp32_to_bf16(float f) {
  uint32_t x = fp32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet nan
  x += 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace fastllm
