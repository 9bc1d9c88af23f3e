// Scalar RoPE element loop shared by every ISA unit (the generic path, and the tails of the
// vector paths). static inline on purpose: each ISA unit gets its own copy (see isa.h).
#pragma once

#include <cstdint>

#include "common/half.h"

// No fused multiply-add anywhere in RoPE: the vector paths stay bit-exact with this one.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace fastllm {

struct F32 {
  using T = float;
  static inline float load(const float* p) { return *p; }
  static inline void store(float* p, float v) { *p = v; }
};
struct F16 {
  using T = uint16_t;
  static inline float load(const uint16_t* p) { return fp16_to_fp32(*p); }
  static inline void store(uint16_t* p, float v) { *p = fp32_to_fp16(v); }
};
struct BF16 {
  using T = uint16_t;
  static inline float load(const uint16_t* p) { return bf16_to_fp32(*p); }
  static inline void store(uint16_t* p, float v) { *p = fp32_to_bf16(v); }
};

// Rotates elements [begin, half) of one head vector.
template <typename E>
static inline void rope_scalar_span(const typename E::T* x, typename E::T* out, const float* cos,
                                    const float* sin, int64_t begin, int64_t half, float sign) {
  for (int64_t i = begin; i < half; ++i) {
    const float x1 = E::load(x + i), x2 = E::load(x + i + half);
    const float c = cos[i], s = sign * sin[i];
    const float lo = x1 * c - x2 * s;
    const float hi = x2 * c + x1 * s;
    E::store(out + i, lo);
    E::store(out + i + half, hi);
  }
}

}  // namespace fastllm
