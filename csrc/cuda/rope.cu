// Rotary position embedding on the GPU, HF half-rotation layout (math in csrc/cpu/rope.h and
// fastllm/kernels/rope/ref.py): for a head vector x at position p, c = cos[p], s = sign*sin[p],
//
//   out[i] = x[i] c[i] - x[i + D/2] s[i],   out[i + D/2] = x[i + D/2] c[i] + x[i] s[i].
//
// One block per (batch, token): it rotates every q head and then every k head of that token, so
// q and k share one launch and the cos/sin rows are read once per token. Each thread handles VEC
// consecutive pairs (16-byte loads: VEC=4 for float32, 8 for 16-bit types) when the
// strides and pointers allow it, else VEC=1. Memory traffic is the minimum (read q, k once,
// write once), so the kernel is bandwidth-bound: napkin math for B*T tokens is
// bytes = 2 * B*T*(Hq+Hk)*D*sizeof(T). Math in float32, one rounding at the store.
// Test: tests/kernels/test_rope_backends.py -m cuda; benchmark: bench/bench_rope.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/rope_cuda.h"

namespace fastllm {
namespace {

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// VEC elements of T moved as one aligned word.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

struct TokenGeometry {
  const char* in;
  char* out;
  int64_t in_head_stride, out_head_stride;  // elements
  int64_t heads;
};

template <typename T, int VEC>
__device__ __forceinline__ void rotate_heads(const TokenGeometry& g, const float* cos_row,
                                             const float* sin_row, int64_t half, float sign) {
  const int64_t pairs_per_head = half / VEC;
  const int64_t work = g.heads * pairs_per_head;
  const T* in = reinterpret_cast<const T*>(g.in);
  T* out = reinterpret_cast<T*>(g.out);
  for (int64_t w = threadIdx.x; w < work; w += blockDim.x) {
    const int64_t h = w / pairs_per_head, i = (w % pairs_per_head) * VEC;
    const T* x = in + h * g.in_head_stride;
    T* y = out + h * g.out_head_stride;
    const Pack<T, VEC> x1 = *reinterpret_cast<const Pack<T, VEC>*>(x + i);
    const Pack<T, VEC> x2 = *reinterpret_cast<const Pack<T, VEC>*>(x + i + half);
    Pack<T, VEC> lo, hi;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float a = to_float(x1.v[j]), b = to_float(x2.v[j]);
      const float c = cos_row[i + j], s = sign * sin_row[i + j];
      lo.v[j] = from_float<T>(a * c - b * s);
      hi.v[j] = from_float<T>(b * c + a * s);
    }
    *reinterpret_cast<Pack<T, VEC>*>(y + i) = lo;
    *reinterpret_cast<Pack<T, VEC>*>(y + i + half) = hi;
  }
}

template <typename T, int VEC>
__global__ void rope_kernel(RopeCudaArgs a) {
  const int64_t row = blockIdx.x;
  const int64_t b = row / a.seq_len, t = row % a.seq_len;
  const int64_t p = a.positions ? a.positions[b * a.pos_strides[0] + t * a.pos_strides[1]] : a.offset + t;
  const int64_t half = a.head_dim / 2;
  const float* cos_row = a.cos + p * half;
  const float* sin_row = a.sin + p * half;
  const float sign = a.inverse ? -1.0f : 1.0f;
  for (int which = 0; which < 2; ++which) {
    const RopeTensor& tensor = which ? a.k : a.q;
    const int64_t in_offset = (b * tensor.in_strides[0] + t * tensor.in_strides[1]) * sizeof(T);
    const int64_t out_offset = (b * tensor.out_strides[0] + t * tensor.out_strides[1]) * sizeof(T);
    TokenGeometry g{reinterpret_cast<const char*>(tensor.in) + in_offset,
                    reinterpret_cast<char*>(tensor.out) + out_offset, tensor.in_strides[2],
                    tensor.out_strides[2], tensor.heads};
    rotate_heads<T, VEC>(g, cos_row, sin_row, half, sign);
  }
}

bool aligned(uintptr_t address, int64_t bytes) { return address % bytes == 0; }

// VEC pairs per thread is safe when every row start (and the second half) stays VEC-aligned.
template <typename T, int VEC>
bool can_vectorize(const RopeCudaArgs& a) {
  const int64_t half = a.head_dim / 2;
  if (half % VEC) return false;
  for (const RopeTensor* t : {&a.q, &a.k}) {
    if (!aligned(t->in, sizeof(T) * VEC) || !aligned(t->out, sizeof(T) * VEC)) return false;
    for (int i = 0; i < 3; ++i) {
      if (t->in_strides[i] % VEC || t->out_strides[i] % VEC) return false;
    }
  }
  return aligned(reinterpret_cast<uintptr_t>(a.cos), 4 * VEC) &&
         aligned(reinterpret_cast<uintptr_t>(a.sin), 4 * VEC);
}

template <typename T>
void launch(const RopeCudaArgs& a, cudaStream_t stream) {
  const int64_t rows = a.batch * a.seq_len;
  if (rows == 0) return;
  const int64_t work = (a.q.heads > a.k.heads ? a.q.heads : a.k.heads) * (a.head_dim / 2);
  constexpr int kVec = 16 / sizeof(T);  // 16-byte loads: 4 float32 or 8 16-bit values
  const bool vec = can_vectorize<T, kVec>(a);
  const int64_t items = vec ? work / kVec : work;
  const int threads = items >= 256 ? 256 : (items >= 128 ? 128 : 64);
  if (vec) {
    rope_kernel<T, kVec><<<static_cast<unsigned>(rows), threads, 0, stream>>>(a);
  } else {
    rope_kernel<T, 1><<<static_cast<unsigned>(rows), threads, 0, stream>>>(a);
  }
  FASTLLM_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace

void rope_cuda(int dtype, const RopeCudaArgs& args, uintptr_t stream) {
  if (args.head_dim <= 0 || args.head_dim % 2)
    throw std::invalid_argument("rope_cuda: head_dim must be even and positive, got " +
                                std::to_string(args.head_dim));
  if (args.batch * args.seq_len > 0x7FFFFFFFLL)
    throw std::invalid_argument("rope_cuda: more than 2^31-1 tokens in one call");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0: launch<float>(args, s); break;
    case 1: launch<__half>(args, s); break;
    case 2: launch<__nv_bfloat16>(args, s); break;
    default: throw std::invalid_argument("rope_cuda: dtype code must be 0, 1 or 2, got " + std::to_string(dtype));
  }
}

}  // namespace fastllm
