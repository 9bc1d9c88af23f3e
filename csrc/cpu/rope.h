// Rotary position embedding on the CPU, HF half-rotation layout. For a head vector x (D wide) at
// position p, with c = cos[p], s = sign * sin[p] (float32 tables, D/2 wide):
//
//   out[i]       = x[i] * c[i] - x[i + D/2] * s[i]
//   out[i + D/2] = x[i + D/2] * c[i] + x[i] * s[i]        for i < D/2
//
// sign = +1 is the forward rotation, -1 the inverse (the backward). Math in float32, one rounding
// to the element type at the store, no fused multiply-add: every ISA path is bit-exact with the
// generic one and with fastllm/kernels/rope/ref.py. Test: tests/kernels/test_rope_backends.py;
// benchmark: bench/bench_rope.py.
#pragma once

#include <cstdint>

#include "common/rope_tensor.h"

namespace fastllm {

enum class RopeDtype : int { f32 = 0, f16 = 1, bf16 = 2 };

// Rotates n_heads head vectors of one token: head h reads x + h * x_head_stride and writes
// out + h * out_head_stride (strides in elements; out may equal x for in-place use).
using RopeHeadsFn = void (*)(const void* x, int64_t x_head_stride, void* out,
                             int64_t out_head_stride, int64_t n_heads, const float* cos,
                             const float* sin, int64_t half, float sign);

struct RopeKernels {
  RopeHeadsFn f32, f16, bf16;
};

extern const RopeKernels rope_kernels_generic;
extern const RopeKernels rope_kernels_avx2;    // rope_avx2.cpp (x86 builds only)
extern const RopeKernels rope_kernels_avx512;  // rope_avx512.cpp (x86 builds only)

// The table for active_isa().
const RopeKernels& rope_kernels();

// Applies the rotation to q and k of shape (B, T, H, D) (last dim contiguous). positions is an
// int64 (B, T) array with element strides pos_strides, or 0 for "token t is at offset + t".
void rope_apply(RopeDtype dtype, const RopeTensor& q, const RopeTensor& k, uintptr_t cos,
                uintptr_t sin, int64_t max_positions, uintptr_t positions,
                const int64_t pos_strides[2], int64_t offset, int64_t batch, int64_t seq_len,
                int64_t head_dim, bool inverse, int n_threads);

}  // namespace fastllm
