// The geometry of one RoPE operand (q or k), shared by the CPU (csrc/cpu/rope.h) and CUDA
// (csrc/cuda/rope_cuda.h) kernels and their bindings: torch-free, usable from nvcc.
#pragma once

#include <array>
#include <cstdint>

namespace fastllm {

// (B, T, H, D) with a contiguous last dim: base pointers, heads, and element strides for
// (batch, token, head). out may equal in (in place).
struct RopeTensor {
  uintptr_t in, out;
  int64_t heads;
  int64_t in_strides[3], out_strides[3];
};

inline RopeTensor make_rope_tensor(uintptr_t in, uintptr_t out, int64_t heads,
                                   const std::array<int64_t, 3>& in_strides,
                                   const std::array<int64_t, 3>& out_strides) {
  RopeTensor t{in, out, heads, {}, {}};
  for (int i = 0; i < 3; ++i) {
    t.in_strides[i] = in_strides[i];
    t.out_strides[i] = out_strides[i];
  }
  return t;
}

}  // namespace fastllm
