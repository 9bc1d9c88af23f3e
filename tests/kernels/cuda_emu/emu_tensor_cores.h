// Tensor-core building blocks for the CPU block emulator: fp16 / bf16 values, mma.sync m16n8k16
// (one warp), and the shared-memory operand addressing of Hopper's wgmma (matrix descriptors,
// swizzles), ported line by line from tests/kernels/wgmma_spec.py (written from the PTX ISA; its
// docstrings cite the sections). The asynchronous wgmma engine itself is emu_wgmma.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "emu_memory.h"

namespace emu {

enum class Type { kHalf, kBfloat16 };

inline float half_bits_to_float(uint16_t bits) {
  const float sign = (bits & 0x8000) ? -1.0f : 1.0f;
  const int exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
}

inline float bits_to_float(Type type, uint16_t bits) {
  if (type == Type::kHalf) return half_bits_to_float(bits);
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

// ---- mma.sync.m16n8k16.row.col (one warp) --------------------------------------------------------

struct MmaExchange {
  uint32_t a[32][4], b[32][2];
};

inline MmaExchange& mma_exchange(int warp) {
  static MmaExchange slots[32];  // a block has at most 32 warps; fixed, so references stay valid
  return slots[warp];
}

// c += A B with A 16 x 16 (a0 = A[g][2t..], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..])
// and B 16 x 8 (b0 = B[2t..][g], b1 = B[2t+8..][g]); c0..c3 = C[g][2t], C[g][2t+1], C[g+8][2t],
// C[g+8][2t+1] (g = lane / 4, t = lane % 4).
inline void mma_m16n8k16(Type type, float* c, const uint32_t* a, const uint32_t* b) {
  const int warp = self().tid / 32, lane = self().tid % 32;
  MmaExchange& x = mma_exchange(warp);
  std::memcpy(x.a[lane], a, sizeof(x.a[lane]));
  std::memcpy(x.b[lane], b, sizeof(x.b[lane]));
  arrive_and_wait(own_warp().barrier, "mma.sync");
  auto half = [&](uint32_t word, int which) { return bits_to_float(type, static_cast<uint16_t>(word >> (16 * which))); };
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = half(x.a[l][0], e);
      A[g + 8][2 * t + e] = half(x.a[l][1], e);
      A[g][2 * t + 8 + e] = half(x.a[l][2], e);
      A[g + 8][2 * t + 8 + e] = half(x.a[l][3], e);
      B[2 * t + e][g] = half(x.b[l][0], e);
      B[2 * t + 8 + e][g] = half(x.b[l][1], e);
    }
  }
  arrive_and_wait(own_warp().barrier, "mma.sync (read)");
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
    float sum = 0.0f;
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    c[i] += sum;
  }
}

// ---- wgmma descriptors and operand addresses (wgmma_spec.py) ------------------------------------

struct Descriptor {
  uint32_t start, lbo, sbo;
  int base_offset, swizzle;  // swizzle code: 0 none, 1 128B, 2 64B, 3 32B
};

inline Descriptor decode_descriptor(uint64_t desc) {
  const uint64_t reserved = (0b11ull << 14) | (0b11ull << 30) | (0b111ull << 46) | (0x3FFull << 52);
  if (desc & reserved) fail("wgmma descriptor %#llx has unused bits set", static_cast<unsigned long long>(desc));
  const uint64_t field = (1u << 14) - 1;
  return {static_cast<uint32_t>((desc & field) << 4), static_cast<uint32_t>(((desc >> 16) & field) << 4),
          static_cast<uint32_t>(((desc >> 32) & field) << 4), static_cast<int>((desc >> 49) & 7),
          static_cast<int>(desc >> 62)};
}

inline uint32_t swizzle_row_bytes(int swizzle) {
  static const uint32_t bytes[4] = {16, 128, 64, 32};
  return bytes[swizzle];
}

inline uint32_t swizzled(uint32_t canonical, const Descriptor& f) {
  static const int row_bits[4] = {0, 3, 2, 1};
  const int bits = row_bits[f.swizzle];
  if (bits == 0) return canonical;
  const uint32_t rows = ((canonical - (static_cast<uint32_t>(f.base_offset) << 7)) >> 7) & ((1u << bits) - 1);
  return canonical ^ (rows << 4);
}

// Byte address of operand element (mn, k), 16-bit elements; k_major: the reduction index runs
// along the 16-byte chunks (imm-trans 0), otherwise MN does (imm-trans 1).
inline uint32_t operand_address(const Descriptor& f, int mn, int k, bool k_major) {
  const uint32_t row_bytes = swizzle_row_bytes(f.swizzle);
  uint32_t offset;
  if (k_major) {
    const uint32_t chunk_stride = f.swizzle == 0 ? f.lbo : 16;
    offset = (mn % 8) * row_bytes + (mn / 8) * f.sbo + (k % 8) * 2 + (k / 8) * chunk_stride;
  } else if (f.swizzle == 0) {
    offset = (mn % 8) * 2 + (mn / 8) * f.sbo + (k % 8) * 16 + (k / 8) * f.lbo;
  } else {
    const int per_row = static_cast<int>(row_bytes / 2);
    offset = (mn % 8) * 2 + ((mn % per_row) / 8) * 16 + (mn / per_row) * f.lbo + (k % 8) * row_bytes + (k / 8) * f.sbo;
  }
  return swizzled(f.start + offset, f);
}

}  // namespace emu
