// One warpgroup, one wgmma batch: the two operand paths of attention_wgmma.cu in isolation, for
// the GPU tests (tests/kernels/test_cuda_attention_forward.py). Should the attention kernel
// disagree with the reference on a new card, these say which path is wrong, and with the
// descriptor fields given at run time a test can find the encoding that works.
//   mode 0, S = Q K^T: A (64 x D) and B (keys x D) both K-major in 128-byte-swizzled shared memory
//     (Q and K of the kernel), D / 16 ss steps; out (64 x keys) float32.
//   mode 1, O = P V: A = P (64 x keys) from registers, B = V (keys x D) read MN-major
//     (imm-trans-b 1), keys / 16 rs steps; out (64 x D) float32.
// keys is 128 or 64, the two tilings of the kernel.
// The shared-memory descriptors take their leading / stride byte offsets and layout type from the
// caller (the kernel's: mode 0 LBO 0, SBO 1024; mode 1 LBO keys * 128, SBO 1024; layout 1); the
// start addresses are the kernel's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/attention_cuda.h"
#include "cuda/cuda_check.cuh"
#include "cuda/mma_utils.cuh"
#include "cuda/wgmma.cuh"

namespace fastllm {
namespace {

constexpr int kRowsA = 64, kThreads = 128;

// Row-major rows x D 16-bit values from global memory into a swizzled tile (plain stores).
template <int D>
__device__ void stage_tile(uint8_t* tile, const uint16_t* src, int rows) {
  for (int chunk = threadIdx.x; chunk < rows * D / 8; chunk += kThreads) {
    const int row = chunk / (D / 8), col = (chunk % (D / 8)) * 8;
    *reinterpret_cast<uint4*>(tile + swizzled_offset(rows, row, col)) =
        *reinterpret_cast<const uint4*>(src + row * D + col);
  }
}

template <int kCount>
__device__ void store_accumulator(float* out, const float (&acc)[kCount], int cols) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int i = 0; i < kCount; ++i) {
    const int row = warp * 16 + g + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * t4 + (i & 1);
    out[row * cols + col] = acc[i];
  }
}

template <typename T, int D, int kRowsB>
__global__ void __launch_bounds__(kThreads, 1) wgmma_probe_kernel(WgmmaProbeArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t raw_smem[];
  const uint32_t raw_address = shared_address(raw_smem);
  const uint32_t pad = (1024 - (raw_address & 1023)) & 1023;
  uint8_t* smem = raw_smem + pad;
  const uint32_t base = raw_address + pad;
  const auto* a_src = static_cast<const uint16_t*>(a.a);
  const auto* b_src = static_cast<const uint16_t*>(a.b);
  constexpr uint32_t kBOffset = kRowsA * D * 2;  // the B tile after A's (1024-aligned)
  stage_tile<D>(smem + kBOffset, b_src, kRowsB);
  if (a.mode == 0) stage_tile<D>(smem, a_src, kRowsA);
  fence_proxy_async();
  __syncthreads();
  const uint64_t layout = static_cast<uint64_t>(a.layout);

  if (a.mode == 0) {
    float acc[kRowsB / 2];
#pragma unroll
    for (int i = 0; i < kRowsB / 2; ++i) acc[i] = 0.0f;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t a_start = base + (kk / 4) * kRowsA * 128 + (kk % 4) * 32;
      const uint32_t b_start = base + kBOffset + (kk / 4) * kRowsB * 128 + (kk % 4) * 32;
      Wgmma<T, kRowsB>::template ss<0>(acc, smem_descriptor(a_start, a.leading_bytes, a.stride_bytes, layout),
                                       smem_descriptor(b_start, a.leading_bytes, a.stride_bytes, layout), kk > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    keep_in_order(acc);
    store_accumulator(a.out, acc, kRowsB);
  } else {
    // P's A fragments straight from global memory: register r of k-step kk holds row
    // warp * 16 + g + 8 * (r & 1), columns kk * 16 + 8 * (r >> 1) + 2 * t4 + {0, 1}.
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
    uint32_t p[kRowsB / 16][4];
#pragma unroll
    for (int kk = 0; kk < kRowsB / 16; ++kk) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = warp * 16 + g + 8 * (r & 1), col = kk * 16 + 8 * (r >> 1) + 2 * t4;
        p[kk][r] = *reinterpret_cast<const uint32_t*>(a_src + row * kRowsB + col);
      }
    }
    float acc[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) acc[i] = 0.0f;
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kRowsB / 16; ++kk) {
      const uint32_t b_start = base + kBOffset + kk * 16 * 128;
      Wgmma<T, D>::template rs<1>(acc, p[kk], smem_descriptor(b_start, a.leading_bytes, a.stride_bytes, layout),
                                  kk > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    keep_in_order(acc);
    keep_in_order(p);
    store_accumulator(a.out, acc, D);
  }
#else
  __trap();
#endif
}

template <typename T, int D, int kRowsB>
void launch_keys(const WgmmaProbeArgs& a, cudaStream_t stream) {
  constexpr int kBytes = (kRowsA + kRowsB) * D * 2 + 1024;
  FASTLLM_CUDA_CHECK(cudaFuncSetAttribute(wgmma_probe_kernel<T, D, kRowsB>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  wgmma_probe_kernel<T, D, kRowsB><<<1, kThreads, kBytes, stream>>>(a);
  FASTLLM_CUDA_CHECK_LAUNCH("wgmma_probe_kernel");
}

template <typename T, int D>
void launch(const WgmmaProbeArgs& a, cudaStream_t stream) {
  a.keys == 64 ? launch_keys<T, D, 64>(a, stream) : launch_keys<T, D, 128>(a, stream);
}

}  // namespace

void wgmma_probe_cuda(int dtype, const WgmmaProbeArgs& args, uintptr_t stream_handle) {
  if (args.mode != 0 && args.mode != 1) throw std::invalid_argument("wgmma_probe: mode must be 0 (Q K^T) or 1 (P V)");
  if (args.head_dim != 64 && args.head_dim != 128) throw std::invalid_argument("wgmma_probe: head_dim must be 64 or 128");
  if (args.layout < 0 || args.layout > 3) throw std::invalid_argument("wgmma_probe: layout must be 0..3");
  if (args.keys != 64 && args.keys != 128) throw std::invalid_argument("wgmma_probe: keys must be 64 or 128");
  auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const bool half = dtype == 1;
  if (dtype != 1 && dtype != 2) throw std::invalid_argument("wgmma_probe: dtype must be 1 (float16) or 2 (bfloat16)");
  if (args.head_dim == 64) {
    half ? launch<__half, 64>(args, stream) : launch<__nv_bfloat16, 64>(args, stream);
  } else {
    half ? launch<__half, 128>(args, stream) : launch<__nv_bfloat16, 128>(args, stream);
  }
}

}  // namespace fastllm
