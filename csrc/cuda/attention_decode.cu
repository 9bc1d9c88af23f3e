// Split-KV attention decoding (flash-decoding): one query token per sequence (T == 1) against a
// long KV cache. Math: fastllm/kernels/attention/ref.py (with T == 1 the causal mask hides
// nothing: the query is the last position).
//
// A single query has too little work per (batch, head) to fill a GPU, so the keys are split into
// n_splits chunks processed by separate blocks, and a second kernel merges the partial softmaxes:
//
//   split kernel, grid (n_splits, B * Hkv * cdiv(G, 8)), G = H / Hkv: a block reads its chunk of
//   K and V of one kv head ONCE for up to 8 query heads of the group (GQA saves bandwidth here).
//   Each of its 4 warps takes 16-key tiles (tile begin + 16 (warp + 4 i)) and runs them on tensor
//   cores, mma.m16n8k16 with the <= 8 heads as the n = 8 columns (columns past G compute on zero
//   queries and are never stored):
//     S^T (16 keys x 8 heads) = K Q^T, D/16 k-steps;   O^T (D x 8 heads) += V^T P^T, D/16 m-tiles.
//   The fragments are loaded straight from global memory into registers (no shared memory), with
//   g = lane / 4, t = lane % 4. A dot product may sum d in any order, so lane (g, t) reads 16
//   bytes of key rows g and g+8 at d = 32c + 8t; words 2h, 2h+1 are its A registers of k-step
//   2c + h, and Q's B registers are read the same way. P V may sum the keys in any order: k index
//   kappa holds key 2t, 2t+8 (kappa = 2t, 2t+1) and 2t+1, 2t+9 (kappa = 2t+8, 2t+9), so the S^T
//   accumulators of lanes 8t + g/2 and 8t + 4 + g/2 (keys g', g'+8, heads 2t', 2t'+1) become P^T's
//   B fragment with 4 shuffles. V^T's A fragment: lane (g, t) reads 16 bytes of V rows 2t, 2t+8,
//   2t+1, 2t+9 at d = 64h + 8g and byte-permutes; element idx = u D/16 + i of its D/8 values,
//   d_of(i, u) = 64 (idx / 8) + 8g + idx % 8, is row g + 8u of m-tile i. O^T's columns are heads
//   2t, 2t+1, the heads whose softmax statistics the same lane keeps, so rescaling needs no
//   shuffle. The next tile's K is loaded as soon as S^T is done and its V after P V, so every
//   warp keeps about one tile (8 KB at D = 128) in flight. Online softmax in base 2, one rescale
//   per 16 keys; warps merge through shared memory; the block writes (m, l, acc) for its chunk.
//   combine kernel, grid (B * H): m = max_s m_s, l = sum_s l_s 2^(m_s - m),
//   out = sum_s acc_s 2^(m_s - m) / l, lse = (m + log2 l) ln 2.
//
// Napkin math: the cache is read once, 2 * B * Hkv * S * D * sizeof(T) bytes; at 32K tokens,
// Hkv = 8, D = 128, bf16 that is 134 MB per sequence and layer, ~40 us at 3.35 TB/s (H100 SXM).
// Little's law: ~3.35 TB/s x ~0.8 us of loaded latency = ~2.7 MB in flight, ~20 KB per SM; 3
// blocks x 4 warps x ~8 KB per SM give ~96 KB at most. Work per 16 keys and warp (D = 128): 16
// mma, 16 x 16-byte loads, 32 byte-permutes, ~60 softmax/shuffle instructions: far below the
// issue rate (~2000 keys per SM at B = 1, S = 32K). Registers: <= 168 on sm_80..sm_90, no spill,
// so kMinBlocks = 3 blocks of 128 threads fit an SM. Measured (H100 80GB HBM3, CUDA-graph device
// time, 32 heads / 8 kv heads, D = 128, bf16): 2500 GB/s at B = 1, S = 32K (75% of peak), 2979 at
// B = 8 (89%); 0.94-0.98x SDPA (bench/RESULTS.md).
// Index math replayed on the CPU: tests/kernels/test_cuda_decode_model.py.
// Test: tests/kernels/test_attention_backends.py -m cuda, and on a CPU emulator of the block:
// tests/kernels/test_cuda_emulated.py; benchmark: bench/bench_attention.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/attention_cuda.h"
#include "cuda/cuda_check.cuh"
#include "cuda/mma_utils.cuh"

namespace fastllm {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMinBlocks = 3;  // per SM (fastllm/kernels/attention/cuda.py BLOCKS_PER_SM)
constexpr int kMaxGroup = 8;  // query heads served per block
constexpr int kTileKeys = 16;  // keys per warp and step: one k-step of P V
constexpr int kCombineThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 16 bytes read once: skip L1, ask L2 for the whole 256-byte line (a K row at D = 128).
__device__ __forceinline__ uint4 load_stream(const void* p) {
#if defined(FASTLLM_CUDA_EMULATION)  // tests/kernels/cuda_emu: a bounds-checked plain load
  emu::check_global(p, 16, "ld.global.nc");
  return *static_cast<const uint4*>(p);
#else
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
#endif
}

__device__ __forceinline__ uint32_t word(const uint4& r, int i) {
  return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

// Element e (16-bit) of `lo` in the low half, element e of `hi` in the high half.
__device__ __forceinline__ uint32_t pair(const uint4& lo, const uint4& hi, int e) {
  return __byte_perm(word(lo, e / 2), word(hi, e / 2), e % 2 ? 0x7632 : 0x5410);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    attention_decode_split_kernel(AttentionCudaArgs a, AttentionDecodeWorkspace w, int64_t chunks) {
  constexpr int kChunks = D / 32;  // 16-byte K (and Q) loads per key row and lane: d = 32c + 8t
  constexpr int kSteps = D / 16;   // k-steps of K Q^T
  constexpr int kMTiles = D / 16;  // m-tiles of O^T = V^T P^T
  constexpr int kHalves = D / 64;  // 16-byte V loads per key row and lane: d = 64h + 8g
  __shared__ float warp_max[kWarps][kMaxGroup];
  __shared__ float warp_sum[kWarps][kMaxGroup];
  __shared__ float warp_acc[kWarps][kMaxGroup][D];

  const int64_t split = blockIdx.x;
  const int64_t chunk = blockIdx.y % chunks, bkv = blockIdx.y / chunks;
  const int64_t b = bkv / a.kv_heads, kv_head = bkv % a.kv_heads;
  const int64_t group = a.heads / a.kv_heads;
  const int64_t first_head = kv_head * group + chunk * kMaxGroup;
  const int64_t remaining = group - chunk * kMaxGroup;
  const int n_heads = static_cast<int>(remaining < kMaxGroup ? remaining : kMaxGroup);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;

  // Q^T as the B operand: column g is head first_head + g (zero past n_heads); k-step 2c + h takes
  // words 2h (b0) and 2h + 1 (b1) of the 16 bytes at d = 32c + 8t, as K's A fragment does.
  uint32_t q_frag[kSteps][2];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    if (g < n_heads)
      raw = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.q) + b * a.q_strides[0] +
                                            (first_head + g) * a.q_strides[1] + 32 * c + 8 * t);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      q_frag[2 * c + h][0] = word(raw, 2 * h);
      q_frag[2 * c + h][1] = word(raw, 2 * h + 1);
    }
  }

  const T* k_base = static_cast<const T*>(a.k) + b * a.k_strides[0] + kv_head * a.k_strides[1];
  const T* v_base = static_cast<const T*>(a.v) + b * a.v_strides[0] + kv_head * a.v_strides[1];
  const int64_t begin = split * w.keys_per_split;
  const int64_t end = min(a.seq_k, begin + w.keys_per_split);
  const float scale_log2 = a.scale * kLog2e;

  // Registers of one tile: K rows tile + g + 8j (A rows g, g+8), V rows tile + 2t + (r >> 1) + 8 (r & 1)
  // (2t, 2t+8, 2t+1, 2t+9). Rows past the chunk read nothing and hold zeros (0 * garbage may be NaN).
  const int64_t ks = a.k_strides[2], vs = a.v_strides[2];
  const T* k_lane = k_base + g * ks + 8 * t;
  const T* v_lane = v_base + 2 * t * vs + 8 * g;
  uint4 k_raw[2][kChunks], v_raw[4][kHalves];
  auto load_k = [&](int64_t tile) {
    const T* row = k_lane + tile * ks;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const bool valid = tile + 8 * j + g < end;
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
        k_raw[j][c] = valid ? load_stream(row + 8 * j * ks + 32 * c) : make_uint4(0u, 0u, 0u, 0u);
    }
  };
  auto load_v = [&](int64_t tile) {
    const T* row = v_lane + tile * vs;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int offset = (r >> 1) + 8 * (r & 1);
      const bool valid = tile + 2 * t + offset < end;
#pragma unroll
      for (int h = 0; h < kHalves; ++h)
        v_raw[r][h] = valid ? load_stream(row + offset * vs + 64 * h) : make_uint4(0u, 0u, 0u, 0u);
    }
  };

  // Heads 2t and 2t + 1 (e = 0, 1): running max and sum (l over this lane's keys only, summed
  // over g at the end), and O^T m-tile i holding [d_of(i, u)][head 2t + e] in o[i][2u + e].
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[kMTiles][4];
#pragma unroll
  for (int i = 0; i < kMTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  // P^T's B fragment comes from lanes 8t + g/2 (keys 2t, 2t+8) and 8t + 4 + g/2 (keys 2t+1, 2t+9).
  const int src0 = 8 * t + g / 2, src1 = src0 + 4;

  int64_t tile = begin + warp * kTileKeys;
  if (tile < end) {
    load_k(tile);
    load_v(tile);
  }
#pragma unroll 1
  for (; tile < end; tile += kWarps * kTileKeys) {
    const int64_t next = tile + kWarps * kTileKeys;
    // S^T (16 keys x 8 heads) = K Q^T: s[e] = S[head 2t+e][key tile+g], s[2+e]: key tile+g+8.
    // Two accumulators (h = 0, 1) halve the chain of dependent mma.
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, s_odd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int step = 0; step < kSteps; ++step) {
      const int c = step / 2, h = step % 2;
      const uint32_t ka[4] = {word(k_raw[0][c], 2 * h), word(k_raw[1][c], 2 * h), word(k_raw[0][c], 2 * h + 1),
                              word(k_raw[1][c], 2 * h + 1)};
      MmaOp<T>::run(h ? s_odd : s, ka, q_frag[step]);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) s[e] += s_odd[e];
    if (next < end) load_k(next);  // K registers are free again

    // Online softmax of heads 2t, 2t+1 over the tile's 16 keys (lanes t, t+4, ..., t+28). Key
    // `tile` is in range, so each max is finite and masked keys get p = 0.
    const bool valid_lo = tile + g < end, valid_hi = tile + g + 8 < end;
    float alpha[2];
    uint32_t pk[2];  // (P[2t+e][key g], P[2t+e][key g+8]) as a 16-bit pair
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const float s_lo = valid_lo ? s[e] * scale_log2 : -INFINITY;
      const float s_hi = valid_hi ? s[2 + e] * scale_log2 : -INFINITY;
      float tile_max = fmaxf(s_lo, s_hi);
#pragma unroll
      for (int offset = 4; offset < 32; offset *= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffff, tile_max, offset));
      const float new_max = fmaxf(m[e], tile_max);
      alpha[e] = exp2f(m[e] - new_max);
      const float p_lo = exp2f(s_lo - new_max), p_hi = exp2f(s_hi - new_max);
      l[e] = l[e] * alpha[e] + (p_lo + p_hi);
      m[e] = new_max;
      pk[e] = MmaOp<T>::pack(p_lo, p_hi);
    }
    // P^T as the B operand, keys in the order kappa -> key 2t, 2t+8 (b0), 2t+1, 2t+9 (b1): head g
    // is column g % 2 of lane group g / 2.
    const uint32_t x00 = __shfl_sync(0xffffffff, pk[0], src0), x01 = __shfl_sync(0xffffffff, pk[1], src0);
    const uint32_t x10 = __shfl_sync(0xffffffff, pk[0], src1), x11 = __shfl_sync(0xffffffff, pk[1], src1);
    const uint32_t pb[2] = {g % 2 ? x01 : x00, g % 2 ? x11 : x10};
#pragma unroll
    for (int i = 0; i < kMTiles; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[1];
      o[i][2] *= alpha[0];
      o[i][3] *= alpha[1];
      // V^T as the A operand: rows d_of(i, 0) (a0, a2) and d_of(i, 1) (a1, a3); V rows r = 0, 1
      // (keys 2t, 2t+8) give a0, a1 and r = 2, 3 (keys 2t+1, 2t+9) give a2, a3.
      const int lo = i, hi = kMTiles + i;  // element u * kMTiles + i of the lane's D/8 values
      const uint32_t va[4] = {pair(v_raw[0][lo / 8], v_raw[1][lo / 8], lo % 8),
                              pair(v_raw[0][hi / 8], v_raw[1][hi / 8], hi % 8),
                              pair(v_raw[2][lo / 8], v_raw[3][lo / 8], lo % 8),
                              pair(v_raw[2][hi / 8], v_raw[3][hi / 8], hi % 8)};
      MmaOp<T>::run(o[i], va, pb);
    }
    if (next < end) load_v(next);
  }

  // Merge the warps of this block (a warp without a tile has m = -inf and weighs 0).
#pragma unroll
  for (int e = 0; e < 2; ++e) {
#pragma unroll
    for (int offset = 4; offset < 32; offset *= 2) l[e] += __shfl_xor_sync(0xffffffff, l[e], offset);
    if (g == 0) {
      warp_max[warp][2 * t + e] = m[e];
      warp_sum[warp][2 * t + e] = l[e];
    }
  }
#pragma unroll
  for (int i = 0; i < kMTiles; ++i) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int idx = u * kMTiles + i, d = 64 * (idx / 8) + 8 * g + idx % 8;  // d_of(i, u)
#pragma unroll
      for (int e = 0; e < 2; ++e) warp_acc[warp][2 * t + e][d] = o[i][2 * u + e];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < n_heads * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    float block_max = -INFINITY;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) block_max = fmaxf(block_max, warp_max[wi][i]);
    float sum = 0.0f, out = 0.0f;
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) {
      const float weight = warp_max[wi][i] == -INFINITY ? 0.0f : exp2f(warp_max[wi][i] - block_max);
      sum += warp_sum[wi][i] * weight;
      out += warp_acc[wi][i][d] * weight;
    }
    const int64_t row = split * a.batch * a.heads + b * a.heads + first_head + i;
    w.partial_out[row * D + d] = out;
    if (d == 0) {
      w.partial_max[row] = block_max;
      w.partial_sum[row] = sum;
    }
  }
}

// Reduction over the block (kCombineThreads threads); `op` is max or +.
template <typename Op>
__device__ __forceinline__ float block_reduce(float x, float* scratch, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = op(x, __shfl_xor_sync(0xffffffff, x, offset));
  __syncthreads();  // scratch may still be read from a previous call
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = x;
  __syncthreads();
  x = scratch[0];
  for (int i = 1; i < kCombineThreads / 32; ++i) x = op(x, scratch[i]);
  return x;
}

// Threads (slice, d), slice = threadIdx / D, sum the splits slice, slice + kSlices, ... of column
// d (independent loads, so many in flight), then the slices are added through shared memory.
template <typename T, int D>
__global__ void __launch_bounds__(kCombineThreads)
    attention_decode_combine_kernel(AttentionCudaArgs a, AttentionDecodeWorkspace w) {
  constexpr int kSlices = kCombineThreads / D;
  __shared__ float scratch[kCombineThreads / 32];
  __shared__ float slice_out[kSlices][D];
  const int64_t bh = blockIdx.x, b = bh / a.heads, h = bh % a.heads;
  const int64_t stride = a.batch * a.heads;
  const float* part_max = w.partial_max + bh;
  const float* part_sum = w.partial_sum + bh;
  float global_max = -INFINITY;
  for (int64_t s = threadIdx.x; s < w.n_splits; s += kCombineThreads)
    global_max = fmaxf(global_max, part_max[s * stride]);
  global_max = block_reduce(global_max, scratch, [](float x, float y) { return fmaxf(x, y); });
  float sum = 0.0f;
  for (int64_t s = threadIdx.x; s < w.n_splits; s += kCombineThreads)
    sum += part_sum[s * stride] * exp2f(part_max[s * stride] - global_max);
  sum = block_reduce(sum, scratch, [](float x, float y) { return x + y; });

  const int slice = threadIdx.x / D, d = threadIdx.x % D;
  float value = 0.0f;
#pragma unroll 4
  for (int64_t s = slice; s < w.n_splits; s += kSlices)
    value += w.partial_out[(s * stride + bh) * D + d] * exp2f(part_max[s * stride] - global_max);
  slice_out[slice][d] = value;
  __syncthreads();
  if (slice == 0) {
    for (int i = 1; i < kSlices; ++i) value += slice_out[i][d];
    T* out = static_cast<T*>(a.out) + b * a.out_strides[0] + h * a.out_strides[1];
    out[d] = MmaOp<T>::from_float(value / sum);
  }
  if (threadIdx.x == 0) a.lse[bh] = (global_max + log2f(sum)) * kLn2;
}

#if !defined(FASTLLM_CUDA_EMULATION)  // the CPU emulator (tests/kernels/cuda_emu) launches the kernels itself

template <typename T, int D>
void launch_dim(const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w, cudaStream_t stream) {
  const int64_t group = a.heads / a.kv_heads;
  const int64_t chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const dim3 grid(static_cast<unsigned>(w.n_splits), static_cast<unsigned>(a.batch * a.kv_heads * chunks));
  attention_decode_split_kernel<T, D><<<grid, kThreads, 0, stream>>>(a, w, chunks);
  FASTLLM_CUDA_CHECK_LAUNCH("attention_decode_split_kernel");
  attention_decode_combine_kernel<T, D><<<static_cast<unsigned>(a.batch * a.heads), kCombineThreads, 0, stream>>>(a, w);
  FASTLLM_CUDA_CHECK_LAUNCH("attention_decode_combine_kernel");
}

template <typename T>
void launch(const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w, cudaStream_t stream) {
  if (a.head_dim == 64) {
    launch_dim<T, 64>(a, w, stream);
  } else {
    launch_dim<T, 128>(a, w, stream);
  }
}

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace

#if !defined(FASTLLM_CUDA_EMULATION)

void attention_decode_cuda(int dtype, const AttentionCudaArgs& args, const AttentionDecodeWorkspace& w,
                           uintptr_t stream) {
  if (args.seq_q != 1)
    throw std::invalid_argument("attention_decode_cuda: needs one query per sequence, got T=" +
                                std::to_string(args.seq_q));
  if (args.head_dim != 64 && args.head_dim != 128)
    throw std::invalid_argument("attention_decode_cuda: head_dim must be 64 or 128, got " +
                                std::to_string(args.head_dim));
  if (w.n_splits <= 0 || w.keys_per_split <= 0 || (w.n_splits - 1) * w.keys_per_split >= args.seq_k)
    throw std::invalid_argument("attention_decode_cuda: every split must hold at least one key");
  if (args.kv_heads <= 0 || args.heads % args.kv_heads)
    throw std::invalid_argument("attention_decode_cuda: heads must be a multiple of kv_heads");
  if (args.batch * args.heads > 65535)  // bounds the split grid's y (B * Hkv * chunks <= B * H) too
    throw std::invalid_argument("attention_decode_cuda: batch * heads exceeds 65535");
  if (args.batch == 0 || args.heads == 0) return;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 1: launch<__half>(args, w, s); break;
    case 2: launch<__nv_bfloat16>(args, w, s); break;
    default:
      throw std::invalid_argument("attention_decode_cuda: dtype code must be 1 (float16) or 2 (bfloat16), got " +
                                  std::to_string(dtype));
  }
}

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace fastllm
