// Split-KV attention decoding (flash-decoding): one query token per sequence (T == 1) against a
// long KV cache. Math: fastllm/kernels/attention/ref.py (with T == 1 the causal mask hides
// nothing: the query is the last position).
//
// A single query has too little work per (batch, head) to fill a GPU, so the keys are split into
// n_splits chunks processed by separate blocks, and a second kernel merges the partial softmaxes:
//
//   split kernel, grid (n_splits, B * Hkv * cdiv(G, 8)), G = H / Hkv: a block reads its chunk of
//   K and V of one kv head ONCE for up to 8 query heads of the group (GQA saves bandwidth here).
//   Teams of D/8 threads each own one key at a time (16-byte loads of K and V rows); a team keeps
//   per head a running max m, sum l and output acc (its 8-wide slice of D), in base 2. Teams
//   merge through shared memory and the block writes (m, l, acc) for its chunk.
//   combine kernel, grid (B * H): m = max_s m_s, l = sum_s l_s 2^(m_s - m),
//   out = sum_s acc_s 2^(m_s - m) / l, lse = (m + log2 l) ln 2.
//
// Napkin math: the cache is read once, 2 * B * Hkv * S * D * sizeof(T) bytes; at 32K tokens,
// Hkv = 8, D = 128, bf16 that is 134 MB per sequence and layer, ~40 us at 3.35 TB/s (H100 SXM).
// Test: tests/kernels/test_attention_backends.py -m cuda; benchmark: bench/bench_attention.py.
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
constexpr int kMaxGroup = 8;  // query heads served per block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <typename T>
__device__ __forceinline__ void load8(const T* src, float out[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(src);
  const T* values = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < 8; ++e) out[e] = MmaOp<T>::to_float(values[e]);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    attention_decode_split_kernel(AttentionCudaArgs a, AttentionDecodeWorkspace w, int64_t chunks) {
  constexpr int kTeam = D / 8;                // threads per key
  constexpr int kTeams = kThreads / kTeam;    // keys in flight per block
  __shared__ float team_max[kTeams][kMaxGroup];
  __shared__ float team_sum[kTeams][kMaxGroup];
  __shared__ float team_acc[kTeams][kMaxGroup][D];

  const int64_t split = blockIdx.x;
  const int64_t chunk = blockIdx.y % chunks, bkv = blockIdx.y / chunks;
  const int64_t b = bkv / a.kv_heads, kv_head = bkv % a.kv_heads;
  const int64_t group = a.heads / a.kv_heads;
  const int64_t first_head = kv_head * group + chunk * kMaxGroup;
  const int64_t remaining = group - chunk * kMaxGroup;
  const int n_heads = static_cast<int>(remaining < kMaxGroup ? remaining : kMaxGroup);
  const int team = threadIdx.x / kTeam, member = threadIdx.x % kTeam, d0 = member * 8;

  float q[kMaxGroup][8] = {};
#pragma unroll
  for (int i = 0; i < kMaxGroup; ++i) {
    if (i < n_heads) {
      load8(static_cast<const T*>(a.q) + b * a.q_strides[0] + (first_head + i) * a.q_strides[1] + d0, q[i]);
    }
  }
  const float scale_log2 = a.scale * kLog2e;
  float m[kMaxGroup], l[kMaxGroup], acc[kMaxGroup][8];
#pragma unroll
  for (int i = 0; i < kMaxGroup; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i][e] = 0.0f;
  }

  const T* k = static_cast<const T*>(a.k) + b * a.k_strides[0] + kv_head * a.k_strides[1] + d0;
  const T* v = static_cast<const T*>(a.v) + b * a.v_strides[0] + kv_head * a.v_strides[1] + d0;
  const int64_t begin = split * w.keys_per_split;
  const int64_t end = min(a.seq_k, begin + w.keys_per_split);
  // Every lane runs the same number of iterations (the shuffles below need whole warps); a team
  // whose key falls past the chunk computes on zeros and skips the update.
  for (int64_t base = begin; base < end; base += kTeams) {
    const int64_t key = base + team;
    const bool valid = key < end;
    float kv[8] = {}, vv[8] = {};
    if (valid) {
      load8(k + key * a.k_strides[2], kv);
      load8(v + key * a.v_strides[2], vv);
    }
#pragma unroll
    for (int i = 0; i < kMaxGroup; ++i) {
      if (i >= n_heads) continue;  // uniform across the block
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < 8; ++e) dot += q[i][e] * kv[e];
#pragma unroll
      for (int offset = kTeam / 2; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffff, dot, offset);
      if (!valid) continue;
      const float s = dot * scale_log2;
      const float new_max = fmaxf(m[i], s);
      const float alpha = exp2f(m[i] - new_max), p = exp2f(s - new_max);
      l[i] = l[i] * alpha + p;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[i][e] = acc[i][e] * alpha + p * vv[e];
      m[i] = new_max;
    }
  }

  // Merge the teams of this block.
#pragma unroll
  for (int i = 0; i < kMaxGroup; ++i) {
    if (member == 0) {
      team_max[team][i] = m[i];
      team_sum[team][i] = l[i];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) team_acc[team][i][d0 + e] = acc[i][e];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < n_heads * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    float block_max = -INFINITY;
    for (int t = 0; t < kTeams; ++t) block_max = fmaxf(block_max, team_max[t][i]);
    float sum = 0.0f, out = 0.0f;
    for (int t = 0; t < kTeams; ++t) {
      const float weight = team_max[t][i] == -INFINITY ? 0.0f : exp2f(team_max[t][i] - block_max);
      sum += team_sum[t][i] * weight;
      out += team_acc[t][i][d] * weight;
    }
    const int64_t row = split * a.batch * a.heads + b * a.heads + first_head + i;
    w.partial_out[row * D + d] = out;
    if (d == 0) {
      w.partial_max[row] = block_max;
      w.partial_sum[row] = sum;
    }
  }
}

template <typename T>
__global__ void attention_decode_combine_kernel(AttentionCudaArgs a, AttentionDecodeWorkspace w) {
  const int64_t bh = blockIdx.x, b = bh / a.heads, h = bh % a.heads;
  const int64_t stride = a.batch * a.heads;
  float global_max = -INFINITY;
  for (int64_t s = 0; s < w.n_splits; ++s) global_max = fmaxf(global_max, w.partial_max[s * stride + bh]);
  float sum = 0.0f;
  for (int64_t s = 0; s < w.n_splits; ++s)
    sum += w.partial_sum[s * stride + bh] * exp2f(w.partial_max[s * stride + bh] - global_max);
  T* out = static_cast<T*>(a.out) + b * a.out_strides[0] + h * a.out_strides[1];
  for (int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
    float value = 0.0f;
    for (int64_t s = 0; s < w.n_splits; ++s)
      value += w.partial_out[(s * stride + bh) * a.head_dim + d] * exp2f(w.partial_max[s * stride + bh] - global_max);
    out[d] = MmaOp<T>::from_float(value / sum);
  }
  if (threadIdx.x == 0) a.lse[bh] = (global_max + log2f(sum)) * kLn2;
}

template <typename T>
void launch(const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w, cudaStream_t stream) {
  const int64_t group = a.heads / a.kv_heads;
  const int64_t chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const dim3 grid(static_cast<unsigned>(w.n_splits), static_cast<unsigned>(a.batch * a.kv_heads * chunks));
  if (a.head_dim == 64) {
    attention_decode_split_kernel<T, 64><<<grid, kThreads, 0, stream>>>(a, w, chunks);
  } else {
    attention_decode_split_kernel<T, 128><<<grid, kThreads, 0, stream>>>(a, w, chunks);
  }
  FASTLLM_CUDA_CHECK_LAUNCH("attention_decode_split_kernel");
  attention_decode_combine_kernel<T><<<static_cast<unsigned>(a.batch * a.heads), 128, 0, stream>>>(a, w);
  FASTLLM_CUDA_CHECK_LAUNCH("attention_decode_combine_kernel");
}

}  // namespace

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

}  // namespace fastllm
