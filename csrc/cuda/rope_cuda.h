// Launcher interface of csrc/cuda/rope.cu (torch-free: device pointers, element strides, stream).
#pragma once

#include <cstdint>

#include "common/rope_tensor.h"

namespace fastllm {

struct RopeCudaArgs {
  RopeTensor q, k;  // common/rope_tensor.h
  const float* cos;       // (max_positions, D/2) float32, contiguous
  const float* sin;
  const int64_t* positions;  // (B, T) int64 with pos_strides, or null: token t is at offset + t
  int64_t pos_strides[2];
  int64_t offset, batch, seq_len, head_dim;
  bool inverse;
};

// dtype: 0 float32, 1 float16, 2 bfloat16. Positions must already lie inside the tables. Launches
// on `stream` of CUDA device `device` (made current for the launch, then restored).
void rope_cuda(int dtype, const RopeCudaArgs& args, int device, uintptr_t stream);

}  // namespace fastllm
