// Launcher interface of csrc/cuda/rope.cu (torch-free: device pointers, element strides, stream).
#pragma once

#include <cstdint>

namespace fastllm {

// One of q / k: (B, T, H, D) with a contiguous last dim; strides in elements for (b, t, h).
// out may equal in (in place).
struct RopeCudaTensor {
  uintptr_t in, out;
  int64_t heads;
  int64_t in_strides[3], out_strides[3];
};

struct RopeCudaArgs {
  RopeCudaTensor q, k;
  const float* cos;       // (max_positions, D/2) float32, contiguous
  const float* sin;
  const int64_t* positions;  // (B, T) int64 with pos_strides, or null: token t is at offset + t
  int64_t pos_strides[2];
  int64_t offset, batch, seq_len, head_dim;
  bool inverse;
};

// dtype: 0 float32, 1 float16, 2 bfloat16. Positions must already lie inside the tables.
void rope_cuda(int dtype, const RopeCudaArgs& args, uintptr_t stream);

}  // namespace fastllm
