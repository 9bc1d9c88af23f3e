// RoPE driver: picks the ISA table, walks (batch, token) rows on the thread pool and hands each
// token's q heads and k heads to the row kernel with that token's cos/sin rows (see rope.h).
#include "cpu/rope.h"

#include <algorithm>

#include "common/check.h"
#include "common/parallel.h"
#include "cpu/isa.h"

namespace fastllm {

const RopeKernels& rope_kernels() {
  switch (active_isa()) {
#if defined(FASTLLM_X86)
    case Isa::avx512: return rope_kernels_avx512;
    case Isa::avx2: return rope_kernels_avx2;
#endif
    default: return rope_kernels_generic;
  }
}

namespace {

RopeHeadsFn pick(const RopeKernels& kernels, RopeDtype dtype) {
  switch (dtype) {
    case RopeDtype::f32: return kernels.f32;
    case RopeDtype::f16: return kernels.f16;
    case RopeDtype::bf16: return kernels.bf16;
  }
  fail("rope: unknown dtype code ", static_cast<int>(dtype));
}

int64_t element_size(RopeDtype dtype) { return dtype == RopeDtype::f32 ? 4 : 2; }

void rotate_token(RopeHeadsFn fn, const RopeTensor& t, int64_t elem, int64_t b, int64_t s,
                  const float* cos, const float* sin, int64_t half, float sign) {
  const char* in = reinterpret_cast<const char*>(t.in) +
                   (b * t.in_strides[0] + s * t.in_strides[1]) * elem;
  char* out = reinterpret_cast<char*>(t.out) + (b * t.out_strides[0] + s * t.out_strides[1]) * elem;
  fn(in, t.in_strides[2], out, t.out_strides[2], t.heads, cos, sin, half, sign);
}

}  // namespace

void rope_apply(RopeDtype dtype, const RopeTensor& q, const RopeTensor& k, uintptr_t cos,
                uintptr_t sin, int64_t max_positions, uintptr_t positions,
                const int64_t pos_strides[2], int64_t offset, int64_t batch, int64_t seq_len,
                int64_t head_dim, bool inverse, int n_threads) {
  FASTLLM_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: head_dim must be even and positive, got ",
                head_dim);
  FASTLLM_CHECK(positions != 0 || (offset >= 0 && offset + seq_len <= max_positions),
                "rope: offset ", offset, " + seq_len ", seq_len, " exceeds the tables (", max_positions, ")");
  const RopeHeadsFn fn = pick(rope_kernels(), dtype);
  const int64_t elem = element_size(dtype), half = head_dim / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  const float* cos_table = reinterpret_cast<const float*>(cos);
  const float* sin_table = reinterpret_cast<const float*>(sin);
  const int64_t* pos = reinterpret_cast<const int64_t*>(positions);
  // Enough work per chunk (~32K elements) that the pool's hand-off cost stays small.
  const int64_t per_token = (q.heads + k.heads) * head_dim;
  const int64_t grain = std::max<int64_t>(1, (32 * 1024) / std::max<int64_t>(1, per_token));
  parallel_range(batch * seq_len, grain, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / seq_len, s = row % seq_len;
      const int64_t p = pos ? pos[b * pos_strides[0] + s * pos_strides[1]] : offset + s;
      FASTLLM_CHECK(p >= 0 && p < max_positions, "rope: position ", p, " outside the tables [0, ",
                    max_positions, ")");
      const float* c = cos_table + p * half;
      const float* sn = sin_table + p * half;
      rotate_token(fn, q, elem, b, s, c, sn, half, sign);
      rotate_token(fn, k, elem, b, s, c, sn, half, sign);
    }
  });
}

}  // namespace fastllm
