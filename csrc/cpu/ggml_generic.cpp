// Scalar GGML Q4_0 / Q8_0: the C++ truth every SIMD path must reproduce bit for bit (see ggml.h
// for the math). The reference quantizers follow ggml's quantize_row_*_ref operation by
// operation in fp32, so their bytes equal ggml's and the gguf Python package's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"
#include "common/half.h"
#include "cpu/ggml.h"

namespace fastllm {
namespace {

// float -> integer as the reference does it (C cast / numpy astype). A non-finite value only
// arises when 1/d overflows for a block of subnormals (its fp16 scale is then 0); numpy and the
// x86 C cast both turn it into 0, so do we, without undefined behaviour.
inline int32_t truncate_or_zero(float v) { return std::isfinite(v) ? static_cast<int32_t>(v) : 0; }

// roundf (half away from zero), then the cast above.
inline int32_t round_or_zero(float v) { return std::isfinite(v) ? static_cast<int32_t>(std::round(v)) : 0; }

void quantize_act_generic(const float* x, block_q8_act* y, int64_t k, int32_t offset) {
  for (int64_t b = 0; b < k / QK; ++b, x += QK) {
    float amax = 0.0f;
    bool finite = true;
    for (int j = 0; j < QK; ++j) {
      finite = finite && std::isfinite(x[j]);
      amax = std::max(amax, std::fabs(x[j]));
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < QK; ++j) {
      const int32_t q = round_or_zero(x[j] * id);
      y[b].qs[j] = static_cast<int8_t>(q);
      sum += q;
    }
    // A NaN or inf anywhere in the block poisons its scale, so it reaches the output.
    y[b].d = finite ? fp16_to_fp32(fp32_to_fp16(d)) : NAN;
    y[b].corr = offset * sum;
  }
}

float vec_dot_q4_0_q8_0_generic(int64_t k, const block_q4_0* x, const block_q8_0* y) {
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      isum += ((x[b].qs[j] & 0x0F) - 8) * y[b].qs[j];
      isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK / 2];
    }
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

float vec_dot_q8_0_q8_0_generic(int64_t k, const block_q8_0* x, const block_q8_0* y) {
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < QK; ++j) isum += x[b].qs[j] * y[b].qs[j];
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

// The unsigned weight byte for element e (0..31) of row r in block b of an x16 tile.
inline int32_t x16_weight(GgmlType type, const uint8_t* quants, int64_t b, int r, int e) {
  if (type == GgmlType::q4_0) {
    const int byte_index = e % 16;  // native byte: element e and e + 16 share it
    const uint8_t byte = quants[b * 256 + (byte_index / 4) * 64 + r * 4 + byte_index % 4];
    return e < 16 ? (byte & 0x0F) : (byte >> 4);
  }
  return quants[b * 512 + (e / 4) * 64 + r * 4 + e % 4];
}

template <GgmlType type>
void gemm_x16_generic(const uint8_t* tile, int64_t nb, const block_q8_act* act, int64_t lda_blocks,
                      int64_t m_rows, float* out, int64_t ldo, int rows) {
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(tile);
  const uint8_t* quants = tile + x16_scale_bytes(nb);
  for (int64_t m = 0; m < m_rows; ++m) {
    const block_q8_act* a = act + m * lda_blocks;
    for (int r = 0; r < rows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = -a[b].corr;
        for (int e = 0; e < QK; ++e) isum += x16_weight(type, quants, b, r, e) * a[b].qs[e];
        acc = std::fma(static_cast<float>(isum), fp16_to_fp32(scales[b * X16_ROWS + r]) * a[b].d, acc);
      }
      out[m * ldo + r] = acc;
    }
  }
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k) {
  FASTLLM_CHECK(k % QK == 0, "quantize_row_q4_0_ref: k=", k, " is not a multiple of ", QK);
  for (int64_t b = 0; b < k / QK; ++b, x += QK) {
    float amax = 0.0f, max = 0.0f;  // the first value of the largest magnitude, with its sign
    for (int j = 0; j < QK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < QK / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + QK / 2] * id;
      const int32_t q0 = std::min(15, truncate_or_zero(x0 + 8.5f));
      const int32_t q1 = std::min(15, truncate_or_zero(x1 + 8.5f));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k) {
  FASTLLM_CHECK(k % QK == 0, "quantize_row_q8_0_ref: k=", k, " is not a multiple of ", QK);
  for (int64_t b = 0; b < k / QK; ++b, x += QK) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < QK; ++j) y[b].qs[j] = static_cast<int8_t>(round_or_zero(x[j] * id));
  }
}

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b, y += QK) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < QK / 2; ++j) {
      y[j] = static_cast<float>((x[b].qs[j] & 0x0F) - 8) * d;
      y[j + QK / 2] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b, y += QK) {
    const float d = fp16_to_fp32(x[b].d);
    for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

void repack_tile_x16(GgmlType type, const uint8_t* src, int64_t src_stride, int rows, int64_t nb,
                     uint8_t* tile) {
  // Also the per-tile step of a matmul on plain rows, so it moves 4-byte words, not bytes.
  const int64_t bsize = block_bytes(type), qbytes = x16_quant_bytes(type);
  const int chunks = type == GgmlType::q4_0 ? 4 : 8;
  const uint32_t flip = type == GgmlType::q4_0 ? 0u : 0x80808080u;  // q8_0: store q + 128
  uint16_t* scales = reinterpret_cast<uint16_t*>(tile);
  uint8_t* quants = tile + x16_scale_bytes(nb);
  std::memset(tile + nb * X16_ROWS * 2, 0, x16_scale_bytes(nb) - nb * X16_ROWS * 2);  // alignment pad
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* q = quants + b * qbytes;
    for (int r = 0; r < X16_ROWS; ++r) {
      const uint8_t* block = r < rows ? src + r * src_stride + b * bsize : nullptr;
      uint16_t scale = 0;  // padding rows: scale 0 and quants that decode to 0
      if (block) std::memcpy(&scale, block, 2);
      scales[b * X16_ROWS + r] = scale;
      for (int c = 0; c < chunks; ++c) {
        uint32_t word = 0;
        if (block) std::memcpy(&word, block + 2 + c * 4, 4);
        word ^= flip;
        std::memcpy(q + c * 64 + r * 4, &word, 4);
      }
    }
  }
}

void unpack_tile_x16(GgmlType type, const uint8_t* tile, int rows, int64_t nb, uint8_t* dst,
                     int64_t dst_stride) {
  const int64_t bsize = block_bytes(type), qbytes = x16_quant_bytes(type);
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(tile);
  const uint8_t* quants = tile + x16_scale_bytes(nb);
  for (int r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* block = dst + r * dst_stride + b * bsize;
      const uint8_t* q = quants + b * qbytes + r * 4;
      std::memcpy(block, &scales[b * X16_ROWS + r], 2);
      const int chunks = type == GgmlType::q4_0 ? 4 : 8;
      for (int c = 0; c < chunks; ++c) {
        for (int j = 0; j < 4; ++j) {
          const uint8_t byte = q[c * 64 + j];
          block[2 + c * 4 + j] = type == GgmlType::q4_0 ? byte : static_cast<uint8_t>(byte ^ 0x80);
        }
      }
    }
  }
}

const GgmlKernels ggml_kernels_generic = {
    quantize_act_generic,
    vec_dot_q4_0_q8_0_generic,
    vec_dot_q8_0_q8_0_generic,
    gemm_x16_generic<GgmlType::q4_0>,
    gemm_x16_generic<GgmlType::q8_0>,
    repack_tile_x16,
};

}  // namespace fastllm
