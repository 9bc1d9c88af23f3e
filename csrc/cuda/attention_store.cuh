// The epilogue both tensor-core attention forwards share (attention.cu, attention_wgmma.cu).
#pragma once

#include <cstdint>

#include "cuda/attention_cuda.h"
#include "cuda/mma_utils.cuh"

namespace fastllm {

// Finishes a thread's two row sums over the 4 threads of its row (lanes 4g..4g+3), normalises,
// and stores its part of those rows of out and, from the first of the 4, their lse (natural log).
// o is the thread's output accumulator in the C layout: o[4 dn + 2 r + e] holds row rows[r],
// column 8 dn + 2 t + e (t = lane % 4). Rows at or past seq_q are padding and not stored.
template <typename T, int D>
__device__ __forceinline__ void store_output_rows(const AttentionCudaArgs& a, int64_t bh, const float* o,
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
      const uint32_t packed = MmaOp<T>::pack(o[4 * dn + 2 * r] * inv, o[4 * dn + 2 * r + 1] * inv);
      *reinterpret_cast<uint32_t*>(out_row + dn * 8 + t4 * 2) = packed;
    }
    if (t4 == 0) a.lse[bh * seq_q + rows[r]] = fmaf(row_max[r], scale_log2, log2f(row_sum[r])) * kLn2;
  }
}

}  // namespace fastllm
