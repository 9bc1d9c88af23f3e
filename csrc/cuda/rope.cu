// Rotary position embedding on the GPU, HF half-rotation layout (math in csrc/cpu/rope.h and
// fastllm/kernels/rope/ref.py): for a head vector x at position p, c = cos[p], s = sign*sin[p],
//
//   out[i] = x[i] c[i] - x[i + D/2] s[i],   out[i + D/2] = x[i + D/2] c[i] + x[i] s[i].
//
// Work split. A token has P = (D/2)/VEC "lanes" (VEC consecutive pairs each: 16-byte accesses,
// VEC=4 for float32 and 8 for 16-bit types, when strides and pointers allow it, else VEC=1) and
// its q heads, then its k heads, cut into groups of kHeadsPerThread. One thread owns one
// (token, head group, lane): it reads its lane's cos/sin once (float32, from L1/L2: every thread
// of the token reads the same row), issues the loads of all its heads' two halves before any math
// (4 heads x 2 x 16 B in flight per thread), then rotates and stores them. A block is a
// (width, rows) rectangle: threadIdx.x walks the token's W = groups * P threads, threadIdx.y the
// tokens, so a (1, 1, 32, 8, 128) decode step is one block of 80 threads and a prefill is many
// blocks each finishing a few whole tokens (rows_per_block picks how many: the most threads
// resident per SM for the kernel's register count); no 64-bit division anywhere.
// tests/kernels/test_cuda_rope_model.py replays this mapping (launch_vec's geometry and the
// kernel's index math) on the CPU to prove every element is written exactly once (odd heads,
// D = 2..256, strided views, the VEC=1 fallback); it reads the k* constants from this file.
//
// Napkin math: bytes = 2 * B*T*(Hq+Hk)*D*sizeof(T) (q and k read once, written once; the cos/sin
// rows are L2 hits). (4, 4096, 32, 8, 128) bf16 moves 336 MB: 0.11 ms at 3 TB/s (what a
// device-to-device copy reaches on an H100 SXM). Compute is ~3 flops per element: irrelevant.
// Bytes in flight: at 95 registers (bf16, sm_90) 4 blocks of 2 tokens x 80 threads share an SM,
// 640 x 128 B = 80 KB per SM, 10.6 MB on 132 SMs, over the ~3-5 MB that 3 TB/s x 1-1.5 us of
// loaded-DRAM latency needs.
// Math in float32, one rounding at the store. Loads are streaming (ld.global.cs: each q/k byte is
// read once, so it should not push the cos/sin rows out of L1).
// Test: tests/kernels/test_rope_backends.py -m cuda; benchmark: bench/bench_rope.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/cuda_check.cuh"
#include "cuda/rope_cuda.h"

namespace fastllm {
namespace {

constexpr int kHeadsPerThread = 4;  // loads in flight per thread: 2 * kHeadsPerThread words
constexpr int kThreads = 256;       // block size when a token is wider than kMaxWidth
constexpr int kMaxWidth = 512;      // widest token handled without a loop over lanes

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

// The machine word that moves VEC elements of T at once.
template <int BYTES> struct WordOf;
template <> struct WordOf<16> { using type = uint4; };
template <> struct WordOf<4> { using type = unsigned int; };
template <> struct WordOf<2> { using type = unsigned short; };

template <typename T, int VEC>
union Pack {
  typename WordOf<sizeof(T) * VEC>::type word;
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_streaming(const T* p) {
  using Word = typename WordOf<sizeof(T) * VEC>::type;
  Pack<T, VEC> r;
  r.word = __ldcs(reinterpret_cast<const Word*>(p));
  return r;
}

template <int VEC>
__device__ __forceinline__ void load_row(const float* __restrict__ p, float (&out)[VEC]) {
  if constexpr (VEC % 4 == 0) {
#pragma unroll
    for (int j = 0; j < VEC; j += 4) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(p + j));
      out[j] = f.x, out[j + 1] = f.y, out[j + 2] = f.z, out[j + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = __ldg(p + j);
  }
}

// Launch geometry, computed on the host (and mirrored by test_cuda_rope_model.py).
struct RopeGrid {
  int pairs;     // P: lanes per head, (D/2) / VEC
  int q_groups;  // ceil(Hq / kHeadsPerThread); the k groups follow
  int width;     // W = (q_groups + k_groups) * P threads per token
  int rows;      // B * T
};

// Blocks reach kMaxWidth = 512 threads, so at most 128 registers. __launch_bounds__(512) says
// that too but makes ptxas aim at 64 (a spill in the float32 kernel on sm_90); __maxnreg__
// (nvcc >= 12.4) caps without that push.
#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ * 100 + __CUDACC_VER_MINOR__ >= 1204)
#define FASTLLM_ROPE_REGS __maxnreg__(128)
#else
#define FASTLLM_ROPE_REGS __launch_bounds__(kMaxWidth)
#endif

template <typename T, int VEC>
__global__ void FASTLLM_ROPE_REGS rope_kernel(const RopeCudaArgs a, const RopeGrid g) {
  // Unsigned: rows < 2^31, but the last block's padding rows may pass 2^31 - 1.
  const unsigned row = blockIdx.x * blockDim.y + threadIdx.y;
  if (row >= static_cast<unsigned>(g.rows)) return;
  const unsigned seq_len = static_cast<unsigned>(a.seq_len);
  const int64_t b = row / seq_len, t = row % seq_len;
  const int64_t p = a.positions ? a.positions[b * a.pos_strides[0] + t * a.pos_strides[1]] : a.offset + t;
  const int half = static_cast<int>(a.head_dim / 2);
  const float* cos_row = a.cos + p * half;
  const float* sin_row = a.sin + p * half;
  for (int w = threadIdx.x; w < g.width; w += blockDim.x) {
    const int group = w / g.pairs;
    const int i = (w - group * g.pairs) * VEC;
    // Field by field: a reference to a.q or a.k picked at run time would copy the struct to
    // local memory.
    const bool is_k = group >= g.q_groups;
    const int h0 = (is_k ? group - g.q_groups : group) * kHeadsPerThread;
    const int heads = static_cast<int>(is_k ? a.k.heads : a.q.heads);
    const int64_t in_hs = is_k ? a.k.in_strides[2] : a.q.in_strides[2];
    const int64_t out_hs = is_k ? a.k.out_strides[2] : a.q.out_strides[2];
    const T* x = reinterpret_cast<const T*>(is_k ? a.k.in : a.q.in) +
                 (b * (is_k ? a.k.in_strides[0] : a.q.in_strides[0]) +
                  t * (is_k ? a.k.in_strides[1] : a.q.in_strides[1]) + h0 * in_hs + i);
    T* y = reinterpret_cast<T*>(is_k ? a.k.out : a.q.out) +
           (b * (is_k ? a.k.out_strides[0] : a.q.out_strides[0]) +
            t * (is_k ? a.k.out_strides[1] : a.q.out_strides[1]) + h0 * out_hs + i);
    __builtin_assume(__isGlobal(y));  // STG rather than a generic ST for the stores below
    Pack<T, VEC> x1[kHeadsPerThread], x2[kHeadsPerThread];
#pragma unroll
    for (int j = 0; j < kHeadsPerThread; ++j) {
      if (h0 + j < heads) {
        x1[j] = load_streaming<T, VEC>(x + j * in_hs);
        x2[j] = load_streaming<T, VEC>(x + j * in_hs + half);
      }
    }
    float c[VEC], s[VEC];
    load_row<VEC>(cos_row + i, c);
    load_row<VEC>(sin_row + i, s);
    if (a.inverse) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) s[v] = -s[v];
    }
#pragma unroll
    for (int j = 0; j < kHeadsPerThread; ++j) {
      if (h0 + j < heads) {
        Pack<T, VEC> lo, hi;
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
          const float e1 = to_float(x1[j].v[v]), e2 = to_float(x2[j].v[v]);
          lo.v[v] = from_float<T>(e1 * c[v] - e2 * s[v]);
          hi.v[v] = from_float<T>(e2 * c[v] + e1 * s[v]);
        }
        *reinterpret_cast<decltype(lo.word)*>(y + j * out_hs) = lo.word;
        *reinterpret_cast<decltype(hi.word)*>(y + j * out_hs + half) = hi.word;
      }
    }
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

int groups_of(int64_t heads) { return static_cast<int>((heads + kHeadsPerThread - 1) / kHeadsPerThread); }

// What an SM can hold, per device (queried once; 0 = not yet known).
struct SmLimits {
  int regs, threads, blocks;
};

SmLimits sm_limits(int device) {
  constexpr int kDevices = 64;
  static std::atomic<int> cache[kDevices][3];
  if (device < 0 || device >= kDevices) return {65536, 2048, 32};
  if (cache[device][0].load(std::memory_order_relaxed) == 0) {
    int regs = 0, threads = 0, blocks = 0;
    FASTLLM_CUDA_CHECK(cudaDeviceGetAttribute(&regs, cudaDevAttrMaxRegistersPerMultiprocessor, device));
    FASTLLM_CUDA_CHECK(cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, device));
    FASTLLM_CUDA_CHECK(cudaDeviceGetAttribute(&blocks, cudaDevAttrMaxBlocksPerMultiprocessor, device));
    cache[device][1].store(threads, std::memory_order_relaxed);
    cache[device][2].store(blocks, std::memory_order_relaxed);
    cache[device][0].store(regs, std::memory_order_relaxed);
  }
  return {cache[device][0].load(std::memory_order_relaxed), cache[device][1].load(std::memory_order_relaxed),
          cache[device][2].load(std::memory_order_relaxed)};
}

// Token rows per block when a token is narrower than kMaxWidth: the count that keeps the most
// threads (so the most loads) resident per SM. Registers are allocated per whole warp, so a block
// of 240 threads costs 8 warps' worth: at 95 registers (bf16, sm_90) and W = 80, 3 rows fit 2
// blocks (480 threads) per SM but 2 rows fit 4 (640). Ties go to fewer rows (more blocks).
int rows_per_block(int width, int rows, int regs, const SmLimits& sm) {
  const int regs_per_warp = (regs * 32 + 255) / 256 * 256;  // 256-register allocation unit
  int best = 1;
  int64_t best_resident = -1;
  for (int y = 1; y * width <= kMaxWidth && y <= rows; ++y) {
    const int warps = (y * width + 31) / 32;
    int blocks = sm.regs / (warps * regs_per_warp);
    blocks = std::min(std::min(blocks, sm.threads / (warps * 32)), sm.blocks);
    const int64_t resident = static_cast<int64_t>(blocks) * y * width;
    if (resident > best_resident) best = y, best_resident = resident;
  }
  return best;
}

template <typename T, int VEC>
int kernel_registers(int device) {
  constexpr int kDevices = 64;
  static std::atomic<int> cache[kDevices];
  const int slot = device >= 0 && device < kDevices ? device : 0;
  int regs = cache[slot].load(std::memory_order_relaxed);
  if (regs == 0) {
    cudaFuncAttributes attributes{};
    FASTLLM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, rope_kernel<T, VEC>));
    regs = attributes.numRegs > 0 ? attributes.numRegs : 128;
    cache[slot].store(regs, std::memory_order_relaxed);
  }
  return regs;
}

template <typename T, int VEC>
void launch_vec(const RopeCudaArgs& a, int device, cudaStream_t stream) {
  RopeGrid g{};
  g.pairs = static_cast<int>(a.head_dim / 2 / VEC);
  g.q_groups = groups_of(a.q.heads);
  const int64_t width = (static_cast<int64_t>(g.q_groups) + groups_of(a.k.heads)) * g.pairs;
  if (width > (1 << 30)) throw std::invalid_argument("rope_cuda: too many heads in one call");
  g.width = static_cast<int>(width);
  g.rows = static_cast<int>(a.batch * a.seq_len);
  if (g.width == 0) return;  // no heads at all
  dim3 block(kThreads, 1);  // a token wider than kMaxWidth: threads loop over its lanes
  if (g.width <= kMaxWidth) {
    block = dim3(g.width, rows_per_block(g.width, g.rows, kernel_registers<T, VEC>(device), sm_limits(device)));
  }
  const unsigned blocks = static_cast<unsigned>((g.rows + block.y - 1) / block.y);
  rope_kernel<T, VEC><<<blocks, block, 0, stream>>>(a, g);
  FASTLLM_CUDA_CHECK_LAUNCH("rope_kernel");
}

template <typename T>
void launch(const RopeCudaArgs& a, int device, cudaStream_t stream) {
  if (a.batch * a.seq_len == 0) return;
  constexpr int kVec = 16 / sizeof(T);  // 16-byte accesses: 4 float32 or 8 16-bit values
  if (can_vectorize<T, kVec>(a)) {
    launch_vec<T, kVec>(a, device, stream);
  } else {
    launch_vec<T, 1>(a, device, stream);
  }
}

// Launches on `device`, then gives the calling thread its current device back (torch keeps its
// own notion of the current device and must not see it change under it).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FASTLLM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) FASTLLM_CUDA_CHECK(cudaSetDevice(device));
    switched_ = device != previous_;
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace

void rope_cuda(int dtype, const RopeCudaArgs& args, int device, uintptr_t stream) {
  if (args.head_dim <= 0 || args.head_dim % 2)
    throw std::invalid_argument("rope_cuda: head_dim must be even and positive, got " +
                                std::to_string(args.head_dim));
  if (args.batch * args.seq_len > 0x7FFFFFFFLL)
    throw std::invalid_argument("rope_cuda: more than 2^31-1 tokens in one call");
  if (args.q.heads > (1 << 30) || args.k.heads > (1 << 30) || args.head_dim > (1 << 30))
    throw std::invalid_argument("rope_cuda: more than 2^30 heads or head_dim in one call");
  DeviceGuard guard(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0: launch<float>(args, device, s); break;
    case 1: launch<__half>(args, device, s); break;
    case 2: launch<__nv_bfloat16>(args, device, s); break;
    default: throw std::invalid_argument("rope_cuda: dtype code must be 0, 1 or 2, got " + std::to_string(dtype));
  }
}

}  // namespace fastllm
