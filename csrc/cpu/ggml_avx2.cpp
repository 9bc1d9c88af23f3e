// AVX2 (+FMA/F16C) GGML kernels for CPUs without AVX-512. Bit-identical to ggml_generic.cpp:
// exact integer block dots, generic per-block fma order (ggml.h).
//
// Without VNNI the byte dot is vpmaddubsw (u8 x s8 -> s16 pairs) + vpmaddwd (-> s32). A 16-row
// tile is processed as two halves of 8 rows (one ymm = 8 rows x 4 bytes). For q4_0 four
// maddubs results can be summed in int16 (4 * 2 * 15 * 127 < 32768); for q8_0 the weights
// are made signed again and multiplied as |w| * sign(a, w), which cannot saturate
// (2 * 128 * 127 < 32768) and is exact since the activations never hold -128 (block_dot).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "common/half.h"
#include "cpu/ggml.h"

namespace fastllm {
namespace {

constexpr int MR = 4;  // activation rows per register block (16 ymm registers)
constexpr int64_t PREFETCH_AHEAD = 8192;  // see ggml_avx512.cpp

static inline __m256i broadcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

static inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

static inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// roundf() per lane (half away from zero); non-finite lanes become 0 (see the generic path).
static inline __m256i round_to_int(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
  __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, one));
  r = _mm256_and_ps(r, _mm256_cmp_ps(_mm256_andnot_ps(sign, r), inf, _CMP_LT_OQ));
  return _mm256_cvttps_epi32(r);
}

void quantize_act_avx2(const float* x, block_q8_act* y, int64_t k, int32_t offset) {
  const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
  for (int64_t b = 0; b < k / QK; ++b, x += QK) {
    __m256 v[4], amax = _mm256_setzero_ps();
    int finite = 0xFF;
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      const __m256 abs = _mm256_andnot_ps(sign, v[i]);
      amax = _mm256_max_ps(abs, amax);  // returns amax when abs is NaN, like std::max(amax, abs)
      finite &= _mm256_movemask_ps(_mm256_cmp_ps(abs, inf, _CMP_LT_OQ));
    }
    const float d = hmax_ps(amax) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) q[i] = round_to_int(_mm256_mul_ps(v[i], id));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), bytes);
    y[b].d = finite == 0xFF ? fp16_to_fp32(fp32_to_fp16(d)) : NAN;
    y[b].corr = offset * hsum_epi32(sum);
  }
}

float vec_dot_q4_0_q8_0_avx2(int64_t k, const block_q4_0* x, const block_q8_0* y) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m256i eights = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    const __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), low4), _mm_and_si128(q, low4));
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].qs));
    const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
    const __m256i off = _mm256_madd_epi16(_mm256_maddubs_epi16(eights, a), ones);
    const int32_t isum = hsum_epi32(_mm256_sub_epi32(dot, off));
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

// Both operands are arbitrary int8 here (blocks from any GGUF), so they are widened to int16 and
// multiplied with vpmaddwd, exact for every pair. ggml's |x| * sign(y, x) trick is not: with
// y = -128 and x < 0, vpsignb negates -128 to -128 and the product has the wrong sign.
float vec_dot_q8_0_q8_0_avx2(int64_t k, const block_q8_0* x, const block_q8_0* y) {
  float acc = 0.0f;
  for (int64_t b = 0; b < k / QK; ++b) {
    const __m128i* xq = reinterpret_cast<const __m128i*>(x[b].qs);
    const __m128i* yq = reinterpret_cast<const __m128i*>(y[b].qs);
    const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(xq)),
                                         _mm256_cvtepi8_epi16(_mm_loadu_si128(yq)));
    const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(xq + 1)),
                                         _mm256_cvtepi8_epi16(_mm_loadu_si128(yq + 1)));
    const int32_t isum = hsum_epi32(_mm256_add_epi32(lo, hi));
    acc = std::fma(static_cast<float>(isum), fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d), acc);
  }
  return acc;
}

// Block b, half `half` (rows 8*half .. 8*half+7) of a tile: eight vectors of weight bytes, vector
// h pairing with activation bytes 4h .. 4h+3. q4_0: unsigned nibbles; q8_0: |w| (the signs are
// applied to the activations).
template <GgmlType type>
static inline void load_weights(const uint8_t* quants, int64_t b, int half, __m256i w[8], __m256i sgn[8]) {
  if constexpr (type == GgmlType::q4_0) {
    const uint8_t* q = quants + b * 256 + 32 * half;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int h = 0; h < 4; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * h));
      w[h] = _mm256_and_si256(v, low4);
      w[h + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    }
  } else {
    const uint8_t* q = quants + b * 512 + 32 * half;
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int h = 0; h < 8; ++h) {
      sgn[h] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * h)), bias);
      w[h] = _mm256_abs_epi8(sgn[h]);
    }
  }
}

// The exact integer dot of 8 rows with one activation block (the q8_0 path needs no offset
// correction: it multiplies signed weights directly). The q8_0 sign trick |w| * sign(a, w) is
// exact for every weight byte, -128 included (vpabsb leaves 0x80, which vpmaddubsw reads as an
// unsigned 128), because the activations come from quantize_act and lie in [-127, 127]: -128,
// which vpsignb cannot negate, never occurs there.
template <GgmlType type>
static inline __m256i block_dot(const __m256i w[8], const __m256i sgn[8], const block_q8_act& a) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (type == GgmlType::q4_0) {
    __m256i lo = _mm256_maddubs_epi16(w[0], broadcast_dword(a.qs));
    __m256i hi = _mm256_maddubs_epi16(w[4], broadcast_dword(a.qs + 16));
    for (int h = 1; h < 4; ++h) {
      lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(w[h], broadcast_dword(a.qs + 4 * h)));
      hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(w[h + 4], broadcast_dword(a.qs + 16 + 4 * h)));
    }
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
    return _mm256_sub_epi32(s, _mm256_set1_epi32(a.corr));
  } else {
    __m256i s = _mm256_setzero_si256();
    for (int h = 0; h < 8; ++h) {
      const __m256i prod = _mm256_maddubs_epi16(w[h], _mm256_sign_epi8(broadcast_dword(a.qs + 4 * h), sgn[h]));
      s = _mm256_add_epi32(s, _mm256_madd_epi16(prod, ones));
    }
    return s;
  }
}

template <GgmlType type, int R>
static inline void gemm_rows(const uint16_t* scales, const uint8_t* quants, int64_t nb,
                             const block_q8_act* act, int64_t lda, float* out, int64_t ldo, int rows) {
  for (int half = 0; half < 2 && 8 * half < rows; ++half) {
    __m256 acc[R];
    for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      if (half == 0) {
        const char* ahead = reinterpret_cast<const char*>(quants) + b * x16_quant_bytes(type) + PREFETCH_AHEAD;
        for (int64_t line = 0; line < x16_quant_bytes(type); line += 64) _mm_prefetch(ahead + line, _MM_HINT_T1);
        if (b % 2 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(scales + b * X16_ROWS) + PREFETCH_AHEAD / 8, _MM_HINT_T1);
      }
      __m256i w[8], sgn[8];
      load_weights<type>(quants, b, half, w, sgn);
      const __m256 dw = _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + b * X16_ROWS + 8 * half)));
      for (int i = 0; i < R; ++i) {
        const block_q8_act& a = act[i * lda + b];
        const __m256i s = block_dot<type>(w, sgn, a);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(a.d)), acc[i]);
      }
    }
    const int valid = rows - 8 * half < 8 ? rows - 8 * half : 8;
    for (int i = 0; i < R; ++i) {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, acc[i]);
      std::memcpy(out + i * ldo + 8 * half, tmp, sizeof(float) * valid);
    }
  }
}

template <GgmlType type>
void gemm_x16_avx2(const uint8_t* tile, int64_t nb, const block_q8_act* act, int64_t lda,
                   int64_t m_rows, float* out, int64_t ldo, int rows) {
  const uint16_t* scales = reinterpret_cast<const uint16_t*>(tile);
  const uint8_t* quants = tile + x16_scale_bytes(nb);
  int64_t m = 0;
  for (; m + MR <= m_rows; m += MR)
    gemm_rows<type, MR>(scales, quants, nb, act + m * lda, lda, out + m * ldo, ldo, rows);
  const block_q8_act* a = act + m * lda;
  float* o = out + m * ldo;
  switch (m_rows - m) {
    case 3: gemm_rows<type, 3>(scales, quants, nb, a, lda, o, ldo, rows); break;
    case 2: gemm_rows<type, 2>(scales, quants, nb, a, lda, o, ldo, rows); break;
    case 1: gemm_rows<type, 1>(scales, quants, nb, a, lda, o, ldo, rows); break;
    default: break;
  }
}

}  // namespace

const GgmlKernels ggml_kernels_avx2 = {
    quantize_act_avx2,
    vec_dot_q4_0_q8_0_avx2,
    vec_dot_q8_0_q8_0_avx2,
    gemm_x16_avx2<GgmlType::q4_0>,
    gemm_x16_avx2<GgmlType::q8_0>,
    repack_tile_x16,
};

}  // namespace fastllm
