// FlashAttention-2 forward on tensor cores (mma.sync m16n8k16, fp16/bf16 in, fp32 accumulate,
// sm_80+). Math and shapes: fastllm/kernels/attention/ref.py; the Triton twin is triton_fwd.py.
//
//   s = scale * q k^T (bottom-right causal mask),  lse = log sum exp s,  out = softmax(s) v
//
// Grid (cdiv(T, 64), B * H); 4 warps, each owning 16 query rows. The Q tile is staged through
// shared memory once and kept as A fragments in registers. Blocks of 64 keys stream through a
// two-stage cp.async pipeline (block j+1 is copied while block j is computed) into padded shared
// memory (row pitch D + 8 halves: the 8 rows an ldmatrix phase reads fall in distinct banks).
// Per block every warp computes S = Q K^T (D/16 x 8 mma, K fragments by ldmatrix), masks and
// scales it, updates its running row max m and row sum l (online softmax in base 2), rescales
// its output accumulator and adds P V (4 x D/8 mma, V fragments by ldmatrix.trans), reusing the
// S accumulators as the A fragments of P (the C layout of two adjacent n-tiles is the A layout
// of one k-tile). Row sums stay per-thread partial until the end. Blocks past the causal
// frontier are skipped.
//
// Napkin math: 4 * T * S * D flops per (batch, head), half that causal: T = S = 4096, D = 128 is
// 8.6 GFLOP (4.3 causal) per head; an H100 SXM peaks near 990 TFLOP/s dense fp16/bf16.
// Benchmark: bench/bench_attention.py.
// Test: tests/kernels/test_attention_backends.py -m cuda.
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

constexpr int kBlockM = 64;  // query rows per block (16 per warp)
constexpr int kBlockN = 64;  // keys per iteration
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Copies rows [row0, row0 + 64) of a (rows, D) matrix with row stride `stride` (elements) into
// shared memory with row pitch D + 8; rows at or past `n_rows` are zero-filled. 16-byte moves,
// synchronous (used once, for Q).
template <int D>
__device__ __forceinline__ void load_tile(uint16_t* smem, const uint16_t* src, int64_t stride,
                                          int64_t row0, int64_t n_rows) {
  constexpr int kPitch = D + 8;
  constexpr int kChunksPerRow = D / 8;
  for (int c = threadIdx.x; c < kBlockN * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row0 + r < n_rows) value = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + col);
    *reinterpret_cast<uint4*>(smem + r * kPitch + col) = value;
  }
}

// The same copy issued as cp.async (completes at the next cp_async_wait + __syncthreads).
template <int D>
__device__ __forceinline__ void load_tile_async(uint16_t* smem, const uint16_t* src, int64_t stride,
                                                int64_t row0, int64_t n_rows) {
  constexpr int kPitch = D + 8;
  constexpr int kChunksPerRow = D / 8;
  for (int c = threadIdx.x; c < kBlockN * kChunksPerRow; c += kThreads) {
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    const bool valid = row0 + r < n_rows;
    cp_async_16(smem + r * kPitch + col, valid ? src + (row0 + r) * stride + col : src, valid);
  }
}

template <int D>
constexpr int shared_bytes() {
  return 2 /* stages */ * 2 /* K, V */ * kBlockN * (D + 8) * static_cast<int>(sizeof(uint16_t));
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) attention_fwd_mma_kernel(AttentionCudaArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using Op = MmaOp<T>;
  constexpr int kPitch = D + 8;
  constexpr int kTile = kBlockN * kPitch;
  extern __shared__ __align__(16) uint16_t smem[];  // [stage][K, V][64][kPitch]
  auto k_tile = [&](int stage) { return smem + (2 * stage) * kTile; };
  auto v_tile = [&](int stage) { return smem + (2 * stage + 1) * kTile; };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  // ldmatrix.x4 addressing: lane gives row (lane % 8) of matrix (lane / 8).
  const int ld_row = lane % 8, ld_mat = lane / 8;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kBlockM;
  const int64_t bh = blockIdx.y, b = bh / a.heads, h = bh % a.heads;
  const int64_t kv_head = h / (a.heads / a.kv_heads);
  const auto* q = static_cast<const uint16_t*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const auto* k = static_cast<const uint16_t*>(a.k) + b * a.k_strides[0] + kv_head * a.k_strides[1];
  const auto* v = static_cast<const uint16_t*>(a.v) + b * a.v_strides[0] + kv_head * a.v_strides[1];

  // Q tile -> registers as A fragments, staged through stage 1's K buffer (free until block 1).
  // Matrices 0..3 of one ldmatrix.x4 are (rows 0-7 | 8-15) x (cols 0-7 | 8-15) of the warp's
  // 16 x 16 slice: exactly A's reg0..reg3.
  load_tile<D>(k_tile(1), q, a.q_strides[2], m0, a.seq_q);
  __syncthreads();
  uint32_t q_frag[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int row = warp * 16 + (ld_mat & 1) * 8 + ld_row, col = kk * 16 + (ld_mat >> 1) * 8;
    ldmatrix_x4(q_frag[kk], k_tile(1) + row * kPitch + col);
  }
  __syncthreads();

  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  const float scale_log2 = a.scale * kLog2e;
  const int64_t diag = a.seq_k - a.seq_q;
  const int64_t rows[2] = {m0 + warp * 16 + g, m0 + warp * 16 + g + 8};
  const int64_t end = a.causal ? min(a.seq_k, m0 + kBlockM + diag) : a.seq_k;
  const int64_t n_blocks = (end + kBlockN - 1) / kBlockN;

  load_tile_async<D>(k_tile(0), k, a.k_strides[2], 0, a.seq_k);
  load_tile_async<D>(v_tile(0), v, a.v_strides[2], 0, a.seq_k);
  cp_async_commit();
  for (int64_t block = 0; block < n_blocks; ++block) {
    const int stage = static_cast<int>(block & 1);
    if (block + 1 < n_blocks) {  // prefetch the next block into the other stage
      load_tile_async<D>(k_tile(stage ^ 1), k, a.k_strides[2], (block + 1) * kBlockN, a.seq_k);
      load_tile_async<D>(v_tile(stage ^ 1), v, a.v_strides[2], (block + 1) * kBlockN, a.seq_k);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint16_t* ks = k_tile(stage);
    const uint16_t* vs = v_tile(stage);
    const int64_t n0 = block * kBlockN;

    // S = Q K^T for this warp's 16 rows and 64 keys: 8 n-tiles of 8 keys. One ldmatrix.x4 gives
    // the B fragments (d 0-7 | 8-15 of the k-step) of two adjacent n-tiles.
    float s[kBlockN / 8][4];
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < kBlockN / 8; j += 2) {
        uint32_t b_frag[4];
        const int key = (j + (ld_mat >> 1)) * 8 + ld_row, col = kk * 16 + (ld_mat & 1) * 8;
        ldmatrix_x4(b_frag, ks + key * kPitch + col);
        Op::run(s[j], q_frag[kk], b_frag);
        Op::run(s[j + 1], q_frag[kk], b_frag + 2);
      }
    }

    // Mask, scale to base 2, new row max (over the 4 threads sharing a row).
    float new_max[2] = {row_max[0], row_max[1]};
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + j * 8 + t4 * 2 + (e & 1);
        const bool visible = key < a.seq_k && (!a.causal || key <= rows[e >> 1] + diag);
        s[j][e] = visible ? s[j][e] * scale_log2 : -INFINITY;
        new_max[e >> 1] = fmaxf(new_max[e >> 1], s[j][e]);
      }
    }
    float alpha[2], block_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffff, new_max[r], 1));
      new_max[r] = fmaxf(new_max[r], __shfl_xor_sync(0xffffffff, new_max[r], 2));
      // A row with nothing visible yet keeps max -inf; use 0 as its reference so no NaN appears.
      const float reference = new_max[r] == -INFINITY ? 0.0f : new_max[r];
      alpha[r] = exp2f(row_max[r] - reference);
      row_max[r] = new_max[r];
      new_max[r] = reference;
    }
#pragma unroll
    for (int j = 0; j < kBlockN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - new_max[e >> 1]);
        block_sum[e >> 1] += s[j][e];
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) row_sum[r] = row_sum[r] * alpha[r] + block_sum[r];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      o[dn][0] *= alpha[0];
      o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1];
      o[dn][3] *= alpha[1];
    }

    // O += P V: P's A fragments are the S accumulators of n-tiles 2kk and 2kk+1; one
    // ldmatrix.x4.trans gives the B fragments (keys 0-7 | 8-15 of the k-step) of two d-tiles.
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint32_t p_frag[4] = {Op::pack(s[2 * kk][0], s[2 * kk][1]), Op::pack(s[2 * kk][2], s[2 * kk][3]),
                                  Op::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  Op::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < D / 8; dn += 2) {
        uint32_t b_frag[4];
        const int key = kk * 16 + (ld_mat & 1) * 8 + ld_row, col = (dn + (ld_mat >> 1)) * 8;
        ldmatrix_x4_trans(b_frag, vs + key * kPitch + col);
        Op::run(o[dn], p_frag, b_frag);
        Op::run(o[dn + 1], p_frag, b_frag + 2);
      }
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }

  // Finish the row sums across the 4 threads of a row, normalise, store out and lse.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffff, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffff, row_sum[r], 2);
  }
  auto* out = static_cast<T*>(a.out) + b * a.out_strides[0] + h * a.out_strides[1];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rows[r] >= a.seq_q) continue;
    const float inv = 1.0f / row_sum[r];
    T* out_row = out + rows[r] * a.out_strides[2];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      const uint32_t packed = Op::pack(o[dn][2 * r] * inv, o[dn][2 * r + 1] * inv);
      *reinterpret_cast<uint32_t*>(out_row + dn * 8 + t4 * 2) = packed;
    }
    if (t4 == 0) a.lse[bh * a.seq_q + rows[r]] = (row_max[r] + log2f(row_sum[r])) * kLn2;
  }
#else
  __trap();  // tensor-core path needs sm_80+; the Python launcher checks the capability
#endif
}

template <typename T, int D>
void launch_dim(const AttentionCudaArgs& a, const dim3& grid, cudaStream_t stream) {
  constexpr int kBytes = shared_bytes<D>();
  FASTLLM_CUDA_CHECK(cudaFuncSetAttribute(attention_fwd_mma_kernel<T, D>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  attention_fwd_mma_kernel<T, D><<<grid, kThreads, kBytes, stream>>>(a);
  FASTLLM_CUDA_CHECK_LAUNCH("attention_fwd_mma_kernel");
}

template <typename T>
void launch(const AttentionCudaArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((a.seq_q + kBlockM - 1) / kBlockM),
                  static_cast<unsigned>(a.batch * a.heads));
  if (a.head_dim == 64) {
    launch_dim<T, 64>(a, grid, stream);
  } else {
    launch_dim<T, 128>(a, grid, stream);
  }
}

}  // namespace

void attention_fwd_cuda(int dtype, const AttentionCudaArgs& args, uintptr_t stream) {
  if (args.head_dim != 64 && args.head_dim != 128)
    throw std::invalid_argument("attention_fwd_cuda: head_dim must be 64 or 128, got " +
                                std::to_string(args.head_dim));
  if (args.kv_heads <= 0 || args.heads % args.kv_heads)
    throw std::invalid_argument("attention_fwd_cuda: heads must be a multiple of kv_heads");
  if (args.batch * args.heads > 65535)
    throw std::invalid_argument("attention_fwd_cuda: batch * heads exceeds 65535 (grid y)");
  if (args.seq_q == 0 || args.batch == 0 || args.heads == 0) return;
  // A row that sees no key would divide by a zero row sum (and with S = 0 the kernel would exit
  // with its first cp.async group never waited on); op.py refuses both, this entry point too.
  if (args.seq_k <= 0) throw std::invalid_argument("attention_fwd_cuda: seq_k must be positive");
  if (args.causal && args.seq_q > args.seq_k)
    throw std::invalid_argument("attention_fwd_cuda: causal attention needs seq_q <= seq_k (bottom-right aligned)");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 1: launch<__half>(args, s); break;
    case 2: launch<__nv_bfloat16>(args, s); break;
    default:
      throw std::invalid_argument("attention_fwd_cuda: dtype code must be 1 (float16) or 2 (bfloat16), got " +
                                  std::to_string(dtype));
  }
}

}  // namespace fastllm
