// RoPE, scalar path: the C++ truth every vector path is compared against (see rope.h).
#include "cpu/rope.h"
#include "cpu/rope_scalar.h"

namespace fastllm {
namespace {

template <typename E>
void rope_heads_generic(const void* x, int64_t x_head_stride, void* out, int64_t out_head_stride,
                        int64_t n_heads, const float* cos, const float* sin, int64_t half,
                        float sign) {
  for (int64_t h = 0; h < n_heads; ++h) {
    const auto* src = static_cast<const typename E::T*>(x) + h * x_head_stride;
    auto* dst = static_cast<typename E::T*>(out) + h * out_head_stride;
    rope_scalar_span<E>(src, dst, cos, sin, 0, half, sign);
  }
}

}  // namespace

const RopeKernels rope_kernels_generic = {rope_heads_generic<F32>, rope_heads_generic<F16>,
                                          rope_heads_generic<BF16>};

}  // namespace fastllm
