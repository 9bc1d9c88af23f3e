// GGML Q4_0 / Q8_0 on the CPU: reference quantizers, dot products and the x16 matmul kernels.
//
// Math. A weight row w (K = 32 * nb values) is stored per 32-block as (d_w, q_w); the activation
// row x is quantized the same way to Q8_0 (d_a, q_a) with ggml's reference rounding. Then
//     y = sum_b  isum_b * (d_w[b] * d_a[b]),   isum_b = sum_j (q_w[b][j] - offset) * q_a[b][j]
// where isum_b is an exact integer. Every ISA path accumulates the blocks in order with one
// fused multiply-add per block, acc = fma(float(isum_b), d_w[b] * d_a[b], acc), so all paths
// give bit-identical results and the SIMD paths differ only in how fast they get isum_b.
//
// Shapes. Weights: N rows of nb blocks, either plain GGUF rows or the repacked x16 tiles of
// quant_blocks.h. Activations: M rows of K floats (row stride lda). Output: M rows of N floats
// (row stride ldo). K must be a multiple of 32 (Python checks; native code asserts).
//
// Tests: tests/kernels/test_ggml_*.py (bytes vs the gguf package, every ISA path vs generic, vs
// fastllm/kernels/ggml/ref.py). Benchmark: bench/bench_ggml_matmul.py.
#pragma once

#include <cstdint>

#include "common/quant_blocks.h"

namespace fastllm {

// Per-ISA kernels. Rows in a tile call: `rows` (<= 16) valid output rows, M activation rows.
struct GgmlKernels {
  // One activation row of k floats -> k / 32 blocks, with corr = offset * sum(q).
  void (*quantize_act)(const float* x, block_q8_act* y, int64_t k, int32_t offset);
  float (*vec_dot_q4_0_q8_0)(int64_t k, const block_q4_0* x, const block_q8_0* y);
  float (*vec_dot_q8_0_q8_0)(int64_t k, const block_q8_0* x, const block_q8_0* y);
  // out[m * ldo + r] = row r of the tile dotted with activation row m (act + m * lda_blocks).
  void (*gemm_q4_0_x16)(const uint8_t* tile, int64_t nb, const block_q8_act* act,
                        int64_t lda_blocks, int64_t m_rows, float* out, int64_t ldo, int rows);
  void (*gemm_q8_0_x16)(const uint8_t* tile, int64_t nb, const block_q8_act* act,
                        int64_t lda_blocks, int64_t m_rows, float* out, int64_t ldo, int rows);
  // Plain rows -> one x16 tile, same bytes as repack_tile_x16 below (which it may call).
  void (*repack_tile)(GgmlType type, const uint8_t* src, int64_t src_stride, int rows, int64_t nb,
                      uint8_t* tile);
};

extern const GgmlKernels ggml_kernels_generic;
#if defined(FASTLLM_X86)
extern const GgmlKernels ggml_kernels_avx2;
extern const GgmlKernels ggml_kernels_avx512;
#endif

// The table for the active ISA (cpu/isa.h).
const GgmlKernels& ggml_kernels();

// Reference quantizers, bit-identical to ggml's quantize_row_q4_0_ref / quantize_row_q8_0_ref
// (and to the gguf Python package). k is a multiple of 32; inputs must be finite.
void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t k);
void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t k);
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t k);

// Plain rows <-> x16 tiles. `rows` (<= 16) rows of nb blocks starting at `src` (row stride
// src_stride bytes) become one tile; missing rows are zero (scale 0). unpack is the inverse.
void repack_tile_x16(GgmlType type, const uint8_t* src, int64_t src_stride, int rows, int64_t nb,
                     uint8_t* tile);
void unpack_tile_x16(GgmlType type, const uint8_t* tile, int rows, int64_t nb, uint8_t* dst,
                     int64_t dst_stride);

// y[M, N] = x[M, K] @ W^T. `weight` is plain GGUF rows (x16 = false, row stride nb * block bytes)
// or x16 tiles (x16 = true). Multithreaded over n_threads (<= 0: all hardware threads).
void ggml_matmul(GgmlType type, bool x16, const uint8_t* weight, int64_t n, int64_t k,
                 const float* x, int64_t m, int64_t lda, float* y, int64_t ldo, int n_threads);

}  // namespace fastllm
