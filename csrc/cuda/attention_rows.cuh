// Per-row work both tensor-core attention forwards share (attention.cu, attention_wgmma.cu): the
// online softmax of a key block and the epilogue. A thread holds parts of two rows, r = 0, 1, in
// the mma / wgmma accumulator (C) layout: element 4 j + e of its scores is row r = e >> 1, key
// 8 j + 2 t + (e & 1) of the block (t = lane % 4); the 4 threads of a row are lanes 4g..4g+3.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/attention_cuda.h"
#include "cuda/mma_utils.cuh"

namespace fastllm {

// The (batch, head) a block works on (bh = blockIdx.y): its rows of q and, through the GQA
// group, of k and v.
struct HeadInputs {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
};
__device__ __forceinline__ HeadInputs head_inputs(const AttentionCudaArgs& a, int64_t bh) {
  const int64_t b = bh / a.heads, h = bh % a.heads, kv_head = h / (a.heads / a.kv_heads);
  return {static_cast<const uint16_t*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1],
          static_cast<const uint16_t*>(a.k) + b * a.k_strides[0] + kv_head * a.k_strides[1],
          static_cast<const uint16_t*>(a.v) + b * a.v_strides[0] + kv_head * a.v_strides[1]};
}

// Element i = 4 j + e of a thread's accumulator, held flat (float[n], the wgmma kernel) or as
// n / 4 fragments of 4 (float[n / 4][4], the mma kernel).
template <int kCount>
__device__ __forceinline__ float& element(float (&values)[kCount], int i) {
  return values[i];
}
template <int kTiles>
__device__ __forceinline__ float& element(float (&values)[kTiles][4], int i) {
  return values[i >> 2][i & 3];
}
template <class Values>
constexpr int element_count() {
  return static_cast<int>(sizeof(Values) / sizeof(float));
}

// One key block of the online softmax, in place: scores s (kCount of them) become
// p = exp2(s c - m c) with c = scale_log2 and m the new row max of the raw scores; row_max and
// row_sum are updated and alpha = exp2((old max - new max) c) returned for the output rescale.
// kMasked hides keys at or past limit[r] (key0 = the block's first key + 2 t). Key 0 is visible to
// every row, so the max is finite from the first block on and no -inf - -inf occurs; the old max is
// -inf only then, where alpha = 0 scales zero accumulators. An unchanged max gives alpha 1 exactly.
template <bool kMasked, class Scores>
__device__ __forceinline__ void online_softmax(Scores& s, int key0, const int (&limit)[2], float (&row_max)[2],
                                               float (&row_sum)[2], float (&alpha)[2], float scale_log2) {
  constexpr int kCount = element_count<Scores>();
  if constexpr (kMasked) {
    const int left[2] = {limit[0] - key0, limit[1] - key0};
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      if ((i >> 2) * 8 + (i & 1) >= left[(i >> 1) & 1]) element(s, i) = -INFINITY;
    }
  }
  float new_max[2] = {row_max[0], row_max[1]};
#pragma unroll
  for (int i = 0; i < kCount; ++i) new_max[(i >> 1) & 1] = fmaxf(new_max[(i >> 1) & 1], element(s, i));
  float neg_max[2], block_sum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffff, new_max[r], 1));
    new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffff, new_max[r], 2));
    neg_max[r] = -new_max[r] * scale_log2;
    alpha[r] = exp2f((row_max[r] - new_max[r]) * scale_log2);
    row_max[r] = new_max[r];
  }
#pragma unroll
  for (int i = 0; i < kCount; ++i) {
    float& score = element(s, i);
    score = exp2f(fmaf(score, scale_log2, neg_max[(i >> 1) & 1]));
    block_sum[(i >> 1) & 1] += score;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) row_sum[r] = fmaf(row_sum[r], alpha[r], block_sum[r]);
}

// o *= alpha per row. Once the row maxima settle most blocks leave all 16 rows of a warp unchanged
// (alpha exactly 1): the multiplies are skipped then (a warp-uniform branch).
template <class Output>
__device__ __forceinline__ void rescale_rows(Output& o, const float (&alpha)[2]) {
  if (__any_sync(0xffffffff, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
    for (int i = 0; i < element_count<Output>(); ++i) element(o, i) *= alpha[(i >> 1) & 1];
  }
}

// Finishes a thread's two row sums over the 4 threads of its row (lanes 4g..4g+3), normalises,
// and stores its part of those rows of out and, from the first of the 4, their lse (natural log).
// o is the thread's output accumulator in the C layout: element 4 dn + 2 r + e is row rows[r],
// column 8 dn + 2 t + e (t = lane % 4). Rows at or past seq_q are padding and not stored.
template <typename T, int D, class Output>
__device__ __forceinline__ void store_output_rows(const AttentionCudaArgs& a, int64_t bh, Output& o,
                                                  float (&row_sum)[2], const float (&row_max)[2],
                                                  const int (&rows)[2], float scale_log2) {
  constexpr float kLn2 = 0.6931471805599453f;
  const int t4 = threadIdx.x % 4;
  const int seq_q = static_cast<int>(a.seq_q);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffff, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffff, row_sum[r], 2);
  }
  T* out = static_cast<T*>(a.out) + (bh / a.heads) * a.out_strides[0] + (bh % a.heads) * a.out_strides[1];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= seq_q) continue;
    const float inv = 1.0f / row_sum[r];
    T* out_row = out + rows[r] * a.out_strides[2];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      const uint32_t packed = MmaOp<T>::pack(element(o, 4 * dn + 2 * r) * inv, element(o, 4 * dn + 2 * r + 1) * inv);
      *reinterpret_cast<uint32_t*>(out_row + dn * 8 + t4 * 2) = packed;
    }
    if (t4 == 0) a.lse[bh * seq_q + rows[r]] = fmaf(row_max[r], scale_log2, log2f(row_sum[r])) * kLn2;
  }
}

}  // namespace fastllm
