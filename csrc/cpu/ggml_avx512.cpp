// AVX-512 (F/BW/VL/DQ + VNNI) GGML kernels. Same results as ggml_generic.cpp bit for bit: the
// integer block dots are exact and the per-block fma order is the generic one (ggml.h).
//
// x16 GEMM inner step, one block b of a 16-row tile against one activation row:
//   4 (q4_0) or 8 (q8_0) 64-byte loads give eight 16 x 4-byte weight vectors (lane r = row r);
//   s = -corr;  8 x  s = vpdpbusd(s, w[h], broadcast(4 activation bytes h));
//   acc = fma(float(s), d_w[16 rows] * d_a, acc)
// Weight vectors are unpacked once per block and reused by up to 8 activation rows.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "common/half.h"
#include "cpu/ggml.h"

namespace fastllm {
namespace {

constexpr int MR = 8;  // activation rows per register block
// Weights are read once, front to back. The hardware prefetchers alone leave a batch-1 GEMV
// well short of DRAM bandwidth (they stop at page boundaries and run only a few lines ahead),
// so every block also prefetches the bytes 8 KiB ahead into L2: past the end of a tile that is
// the next tile, which is where a thread goes next.
constexpr int64_t PREFETCH_AHEAD = 8192;

static inline __m512i broadcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// roundf() for every lane: truncate, then step away from zero when the dropped part is >= 0.5.
static inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)),
      _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_mask_add_ps(t, up, t, one);
}

constexpr int NON_FINITE = 0x01 | 0x08 | 0x10 | 0x80;  // vfpclassps: qnan, +inf, -inf, snan

void quantize_act_avx512(const float* x, block_q8_act* y, int64_t k, int32_t offset) {
  for (int64_t b = 0; b < k / QK; ++b, x += QK) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    // max(new, acc) returns acc when new is NaN, like the generic std::max(acc, new).
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v1), _mm512_abs_ps(v0)));
    const bool finite = (_mm512_fpclass_ps_mask(v0, NON_FINITE) | _mm512_fpclass_ps_mask(v1, NON_FINITE)) == 0;
    const float d = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m512 r0 = round_half_away(_mm512_mul_ps(v0, id)), r1 = round_half_away(_mm512_mul_ps(v1, id));
    // Non-finite products (1/d overflowed for subnormal blocks) become 0, as in the generic path.
    r0 = _mm512_maskz_mov_ps(~_mm512_fpclass_ps_mask(r0, NON_FINITE), r0);
    r1 = _mm512_maskz_mov_ps(~_mm512_fpclass_ps_mask(r1, NON_FINITE), r1);
    const __m512i q0 = _mm512_cvttps_epi32(r0), q1 = _mm512_cvttps_epi32(r1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), _mm512_cvtepi32_epi8(q1));
    y[b].d = finite ? fp16_to_fp32(fp32_to_fp16(d)) : NAN;
    y[b].corr = offset * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}

static inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

float vec_dot_q4_0_q8_0_avx512(int64_t k, const block_q4_0* x, const block_q8_0* y) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m256i eights = _mm256_set1_epi8(8);
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4));
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a);
    const __m256i off = _mm256_dpbusd_epi32(_mm256_setzero_si256(), eights, a);
    const int32_t isum = hsum_epi32(_mm256_sub_epi32(dot, off));
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

float vec_dot_q8_0_q8_0_avx512(int64_t k, const block_q8_0* x, const block_q8_0* y) {
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    // (x + 128) is unsigned for vpdpbusd; the 128 * sum(y) it adds is taken off again.
    const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)), bias);
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a);
    const __m256i off = _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, a);
    const int32_t isum = hsum_epi32(_mm256_sub_epi32(dot, off));
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

// Unpacks block b of a tile into eight vectors of unsigned weight bytes; vector h pairs with
// activation bytes 4h .. 4h+3.
template <GgmlType type>
static inline void load_weights(const uint8_t* quants, int64_t b, __m512i w[8]) {
  if constexpr (type == GgmlType::q4_0) {
    const uint8_t* q = quants + b * 256;
    const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int h = 0; h < 4; ++h) {
      const __m512i v = _mm512_loadu_si512(q + 64 * h);
      w[h] = _mm512_and_si512(v, low4);
      w[h + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
    }
  } else {
    const uint8_t* q = quants + b * 512;
#pragma GCC unroll 8
    for (int h = 0; h < 8; ++h) w[h] = _mm512_loadu_si512(q + 64 * h);
  }
}

template <int64_t QB>
static inline void prefetch_block(const uint16_t* scales, const uint8_t* quants, int64_t b) {
  const char* ahead = reinterpret_cast<const char*>(quants) + b * QB + PREFETCH_AHEAD;
#pragma GCC unroll 8
  for (int64_t line = 0; line < QB; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T1);
  // Scales take 32 bytes a block: one line every other block, as far ahead in blocks.
  if (b % 2 == 0)
    _mm_prefetch(reinterpret_cast<const char*>(scales + b * X16_ROWS) + PREFETCH_AHEAD / 8, _MM_HINT_T1);
}

template <GgmlType type, int R>
static inline void gemm_rows(const uint16_t* scales, const uint8_t* quants, int64_t nb,
                             const block_q8_act* act, int64_t lda, float* out, int64_t ldo,
                             __mmask16 mask) {
  __m512 acc[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  constexpr int64_t QB = x16_quant_bytes(type);
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_block<QB>(scales, quants, b);
    __m512i w[8];
    load_weights<type>(quants, b, w);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + b * X16_ROWS)));
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const block_q8_act& a = act[i * lda + b];
      __m512i s = _mm512_set1_epi32(-a.corr);
#pragma GCC unroll 8
      for (int h = 0; h < 8; ++h) s = _mm512_dpbusd_epi32(s, w[h], broadcast_dword(a.qs + 4 * h));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(a.d)), acc[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(out + i * ldo, mask, acc[i]);
}

template <GgmlType type>
void gemm_x16_avx512(const uint8_t* tile, int64_t nb, const block_q8_act* act, int64_t lda,
                     int64_t m_rows, float* out, int64_t ldo, int rows) {
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(tile);
  const uint8_t* quants = tile + x16_scale_bytes(nb);
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1u);
  int64_t m = 0;
  for (; m + MR <= m_rows; m += MR)
    gemm_rows<type, MR>(scales, quants, nb, act + m * lda, lda, out + m * ldo, ldo, mask);
  const block_q8_act* a = act + m * lda;
  float* o = out + m * ldo;
  switch (m_rows - m) {
    case 7: gemm_rows<type, 7>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 6: gemm_rows<type, 6>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 5: gemm_rows<type, 5>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 4: gemm_rows<type, 4>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 3: gemm_rows<type, 3>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 2: gemm_rows<type, 2>(scales, quants, nb, a, lda, o, ldo, mask); break;
    case 1: gemm_rows<type, 1>(scales, quants, nb, a, lda, o, ldo, mask); break;
    default: break;
  }
}

// 16 rows x 16 bytes (row r at first + r * stride) -> four 64-byte chunks, chunk c holding bytes
// 4c .. 4c+3 of every row: a 16 x 4 transpose of dwords in registers, xor-ing in `flip`.
static inline void transpose_rows(const uint8_t* first, int64_t stride, uint8_t* out, __m512i flip) {
  const __m512i by_chunk = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m512i z[4];
  for (int g = 0; g < 4; ++g) {  // lane i of z[g]: row 4g + i, then regrouped to lane c: chunk c
    const uint8_t* row = first + 4 * g * stride;
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * stride)), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 3 * stride)), 3);
    z[g] = _mm512_permutexvar_epi32(by_chunk, v);
  }
  // 4 x 4 transpose of 128-bit lanes: out chunk c, lane g = z[g] lane c.
  const __m512i t0 = _mm512_shuffle_i32x4(z[0], z[1], 0x44), t1 = _mm512_shuffle_i32x4(z[0], z[1], 0xEE);
  const __m512i t2 = _mm512_shuffle_i32x4(z[2], z[3], 0x44), t3 = _mm512_shuffle_i32x4(z[2], z[3], 0xEE);
  _mm512_storeu_si512(out, _mm512_xor_si512(_mm512_shuffle_i32x4(t0, t2, 0x88), flip));
  _mm512_storeu_si512(out + 64, _mm512_xor_si512(_mm512_shuffle_i32x4(t0, t2, 0xDD), flip));
  _mm512_storeu_si512(out + 128, _mm512_xor_si512(_mm512_shuffle_i32x4(t1, t3, 0x88), flip));
  _mm512_storeu_si512(out + 192, _mm512_xor_si512(_mm512_shuffle_i32x4(t1, t3, 0xDD), flip));
}

// The per-tile step of a matmul on plain GGUF rows; full tiles only (the last may be partial).
void repack_tile_avx512(GgmlType type, const uint8_t* src, int64_t stride, int rows, int64_t nb,
                        uint8_t* tile) {
  if (rows < X16_ROWS) {
    repack_tile_x16(type, src, stride, rows, nb, tile);
    return;
  }
  const int64_t bsize = block_bytes(type), qbytes = x16_quant_bytes(type);
  const __m512i flip = type == GgmlType::q8_0 ? _mm512_set1_epi8(static_cast<char>(0x80)) : _mm512_setzero_si512();
  uint16_t* scales = reinterpret_cast<uint16_t*>(tile);
  uint8_t* quants = tile + x16_scale_bytes(nb);
  std::memset(tile + nb * X16_ROWS * 2, 0, x16_scale_bytes(nb) - nb * X16_ROWS * 2);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = src + b * bsize;
    for (int r = 0; r < X16_ROWS; ++r) std::memcpy(&scales[b * X16_ROWS + r], block + r * stride, 2);
    transpose_rows(block + 2, stride, quants + b * qbytes, flip);
    if (type == GgmlType::q8_0) transpose_rows(block + 18, stride, quants + b * qbytes + 256, flip);
  }
}

}  // namespace

const GgmlKernels ggml_kernels_avx512 = {
    quantize_act_avx512,
    vec_dot_q4_0_q8_0_avx512,
    vec_dot_q8_0_q8_0_avx512,
    gemm_x16_avx512<GgmlType::q4_0>,
    gemm_x16_avx512<GgmlType::q8_0>,
    repack_tile_avx512,
};

}  // namespace fastllm
