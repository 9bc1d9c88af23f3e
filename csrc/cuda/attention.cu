// FlashAttention-2 forward on tensor cores (mma.sync m16n8k16, fp16/bf16 in, fp32 accumulate,
// sm_80+). Math and shapes: fastllm/kernels/attention/ref.py; the Triton twin is triton_fwd.py.
//
//   s = scale * q k^T (bottom-right causal mask),  lse = log sum exp s,  out = softmax(s) v
//
// Grid (cdiv(T, 64), B * H), query blocks launched last-first (blockIdx.x 0 is the last block,
// the one with the most keys under a causal mask) so the final wave holds the short blocks; the
// blocks of one head stay adjacent, so the ones running together share its K/V in L2. 4 warps,
// each owning 16 query rows. The Q tile is staged through shared memory once and kept as A
// fragments in registers (sign-flipped when scale < 0, so the row max below is always taken over
// scale-positive scores). Blocks of 64 keys stream through a two-stage cp.async pipeline (block
// j+1 is copied while block j is computed) into padded shared memory (row pitch D + 8 halves: the
// 8 rows an ldmatrix phase reads fall in distinct banks).
// Per block every warp computes S = Q K^T (D/16 x 8 mma, K fragments by ldmatrix), updates its
// running row max m of the raw scores and row sum l, and forms p = exp2(s * c - m * c) with
// c = max(|scale| log2 e, FLT_MIN) (one FFMA + one MUFU per score), rescales its output
// accumulator and adds P V (4 x D/8 mma, V fragments by ldmatrix.trans), reusing the S
// accumulators as the A fragments of P (the C layout of two adjacent n-tiles is the A layout of
// one k-tile). Row sums stay per-thread partial until the end.
// The key loop is split: blocks every row of the query block sees in full (all of them without
// a causal mask, but a ragged tail) run with no mask at all; only the rest (the <= 2 blocks on the
// causal diagonal, the ragged tail) compare key indices, in 32-bit, against a per-row limit.
// Blocks past the causal frontier are never loaded. Key 0 is visible to every row, so the first
// block makes every row max finite and no -inf - -inf can occur.
//
// Napkin math: 4 * T * S * D flops per (batch, head), half that causal: T = S = 4096, D = 128 is
// 8.6 GFLOP (4.3 causal) per head. Per 64-key block (D = 128) a warp issues 128 mma (0.5 MFLOP)
// and, besides them, ~300 instructions (64 ldmatrix, 32 FFMA + 32 MUFU.EX2 for p, 64 FMUL for
// the O rescale, skipped when none of the warp's row maxima moved, max / sum / pack, 16
// cp.async). It reads 32 KB of shared memory by ldmatrix
// and the block's copies write 8 KB a warp: ~12.5 flop per shared byte, so at 128 B/clk/SM shared
// memory caps an H100 SXM (132 SMs, ~1.75 GHz under load) near 380 TFLOP/s, below mma.sync's own
// ceiling (~2/3 of the 990 TFLOP/s wgmma peak); FA2 (32 rows a warp, half the K/V reads per
// flop) reaches ~330-350 there. Registers: 64 (O) + 32 (S) + 32 (Q) per thread at D = 128, 196
// (sm_80) / 199 (sm_90) in all, no spills: two 128-thread blocks per SM (8 warps). Shared
// memory: 2 stages x (K, V) x 64 x 136 x 2 B = 68 KB at D = 128 (two blocks per SM on sm_80 and
// sm_90, one on sm_86 / sm_89), 36 KB at D = 64 (~160 registers: three blocks per SM).
// Measured (H100 80GB HBM3, bf16, causal, hd 128): 187-239 TFLOP/s from 1K to 16K tokens,
// 0.75-0.84x SDPA flash and below the Triton forward (wgmma on Hopper: 1.16-1.50x), which the
// automatic choice therefore takes for T > 1. Matching it needs a wgmma (sm_90a) kernel.
// Benchmark: bench/bench_attention.py.
// Test: tests/kernels/test_attention_backends.py -m cuda; on a CPU emulator of the block:
// tests/kernels/test_cuda_emulated.py; index and softmax models (CPU):
// tests/kernels/test_cuda_attention_model.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/attention_cuda.h"
#include "cuda/cuda_check.cuh"
#include "cuda/attention_rows.cuh"
#include "cuda/mma_utils.cuh"

namespace fastllm {
namespace {

constexpr int kBlockM = 64;  // query rows per block (16 per warp)
constexpr int kBlockN = 64;  // keys per iteration
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

// Copies the 64 rows starting at `src` (row stride `stride` elements) into shared memory with
// row pitch D + 8; rows at or past `rows_left` are zero-filled. Each thread moves the same
// 16-byte column of rows r0, r0 + kRowsPerPass, ...: one pointer bump per row, no 64-bit
// multiply. kAsync issues cp.async (completes at the next cp_async_wait + __syncthreads),
// otherwise plain loads (used once, for Q). A whole tile in range skips the row checks.
template <int D, bool kAsync>
__device__ __forceinline__ void load_tile(uint16_t* smem, const uint16_t* src, int64_t stride, int rows_left) {
  constexpr int kPitch = D + 8;
  constexpr int kChunksPerRow = D / 8;
  constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  static_assert(kBlockN % kRowsPerPass == 0, "whole passes");
  const int r0 = threadIdx.x / kChunksPerRow, col = (threadIdx.x % kChunksPerRow) * 8;
  const uint16_t* p = src + r0 * stride + col;
  uint16_t* dst = smem + r0 * kPitch + col;
  if (kAsync && rows_left >= kBlockN) {
    const uint32_t dst_address = shared_address(dst);
#pragma unroll
    for (int i = 0; i < kBlockN / kRowsPerPass; ++i) {
      cp_async_16(dst_address + i * kRowsPerPass * kPitch * 2, p);
      p += kRowsPerPass * stride;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kBlockN / kRowsPerPass; ++i) {
    const bool valid = r0 + i * kRowsPerPass < rows_left;
    if constexpr (kAsync) {
      cp_async_16(dst + i * kRowsPerPass * kPitch, valid ? p : src, valid);
    } else {
      uint4 value = make_uint4(0, 0, 0, 0);
      if (valid) value = *reinterpret_cast<const uint4*>(p);
      store_shared_16(dst + i * kRowsPerPass * kPitch, value);
    }
    p += kRowsPerPass * stride;
  }
}

template <int D>
constexpr int shared_bytes() {
  return 2 /* stages */ * 2 /* K, V */ * kBlockN * (D + 8) * static_cast<int>(sizeof(uint16_t));
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) attention_fwd_mma_kernel(AttentionCudaArgs a) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(FASTLLM_CUDA_EMULATION)
  using Op = MmaOp<T>;
  constexpr int kPitch = D + 8;
  constexpr int kTile = kBlockN * kPitch;
  extern __shared__ __align__(16) uint16_t smem[];  // [stage][K, V][64][kPitch]
  auto k_tile = [&](int stage) { return smem + (2 * stage) * kTile; };
  auto v_tile = [&](int stage) { return smem + (2 * stage + 1) * kTile; };

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  // ldmatrix.x4 addressing: lane gives row (lane % 8) of matrix (lane / 8).
  const int ld_row = lane % 8, ld_mat = lane / 8;
  // Last query block first: under a causal mask it has the most keys to visit.
  const int m0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBlockM;
  const int seq_q = static_cast<int>(a.seq_q), seq_k = static_cast<int>(a.seq_k);
  const int64_t bh = blockIdx.y;
  const HeadInputs inputs = head_inputs(a, bh);
  const uint16_t *q = inputs.q, *k = inputs.k, *v = inputs.v;
  const int64_t k_step = kBlockN * a.k_strides[2], v_step = kBlockN * a.v_strides[2];

  // Q tile -> registers as A fragments, staged through stage 1's K buffer (free until block 1).
  // Matrices 0..3 of one ldmatrix.x4 are (rows 0-7 | 8-15) x (cols 0-7 | 8-15) of the warp's
  // 16 x 16 slice: exactly A's reg0..reg3.
  load_tile<D, false>(k_tile(1), q + m0 * a.q_strides[2], a.q_strides[2], seq_q - m0);
  __syncthreads();
  // A negative scale is folded into Q: flipping the sign bits is exact in fp16 and bf16.
  const uint32_t q_sign = a.scale < 0.0f ? 0x80008000u : 0u;
  uint32_t q_frag[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int row = warp * 16 + (ld_mat & 1) * 8 + ld_row, col = kk * 16 + (ld_mat >> 1) * 8;
    ldmatrix_x4(q_frag[kk], k_tile(1) + row * kPitch + col);
#pragma unroll
    for (int i = 0; i < 4; ++i) q_frag[kk][i] ^= q_sign;
  }
  __syncthreads();

  float o[D / 8][4];
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  // row_max: of the raw (sign-folded) scores; row_sum: per-thread partial.
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};
  // At least FLT_MIN: a masked -inf times 0 would be NaN; with scale 0 the scores then round to
  // 0 and every visible key weighs the same, as they should.
  const float scale_log2 = fmaxf(fabsf(a.scale) * kLog2e, FLT_MIN);
  const int diag = seq_k - seq_q;
  const int rows[2] = {m0 + warp * 16 + g, m0 + warp * 16 + g + 8};
  // Keys [0, limit) are visible to a row; every row of the block sees keys [0, full_end).
  const int limit[2] = {a.causal ? min(seq_k, rows[0] + diag + 1) : seq_k,
                        a.causal ? min(seq_k, rows[1] + diag + 1) : seq_k};
  const int end = a.causal ? min(seq_k, m0 + kBlockM + diag) : seq_k;
  const int n_blocks = (end + kBlockN - 1) / kBlockN;
  const int n_full = (a.causal ? min(seq_k, m0 + diag + 1) : seq_k) / kBlockN;

  // Per-lane ldmatrix byte offsets inside a K / V tile; the tile, n-tile and k-step offsets are
  // constants. S = Q K^T: key = (j + (ld_mat >> 1)) * 8 + ld_row, col = kk * 16 + (ld_mat & 1) * 8.
  // O += P V (.trans): key = kk * 16 + (ld_mat & 1) * 8 + ld_row, col = (dn + (ld_mat >> 1)) * 8.
  const uint32_t smem_address = shared_address(smem);
  const uint32_t k_lane = (((ld_mat >> 1) * 8 + ld_row) * kPitch + (ld_mat & 1) * 8) * 2;
  const uint32_t v_lane = (((ld_mat & 1) * 8 + ld_row) * kPitch + (ld_mat >> 1) * 8) * 2;

  load_tile<D, true>(k_tile(0), k, a.k_strides[2], seq_k);
  load_tile<D, true>(v_tile(0), v, a.v_strides[2], seq_k);
  cp_async_commit();

  // One key block; kMasked (a std::bool_constant) adds the key < limit comparisons.
  auto step = [&](int block, auto masked) {
    constexpr bool kMasked = decltype(masked)::value;
    const int stage = block & 1;
    if (block + 1 < n_blocks) {  // prefetch the next block into the other stage
      const int next = (block + 1) * kBlockN;
      load_tile<D, true>(k_tile(stage ^ 1), k + (block + 1) * k_step, a.k_strides[2], seq_k - next);
      load_tile<D, true>(v_tile(stage ^ 1), v + (block + 1) * v_step, a.v_strides[2], seq_k - next);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t ks = smem_address + stage * (2 * kTile * 2) + k_lane;
    const uint32_t vs = smem_address + (2 * stage + 1) * (kTile * 2) + v_lane;

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
        ldmatrix_x4(b_frag, ks + (j * 8 * kPitch + kk * 16) * 2);
        Op::run(s[j], q_frag[kk], b_frag);
        Op::run(s[j + 1], q_frag[kk], b_frag + 2);
      }
    }

    // Mask (diagonal and tail blocks only), softmax, rescale O.
    float alpha[2];
    online_softmax<kMasked>(s, block * kBlockN + t4 * 2, limit, row_max, row_sum, alpha, scale_log2);
    rescale_rows(o, alpha);

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
        ldmatrix_x4_trans(b_frag, vs + (kk * 16 * kPitch + dn * 8) * 2);
        Op::run(o[dn], p_frag, b_frag);
        Op::run(o[dn + 1], p_frag, b_frag + 2);
      }
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  };

  int block = 0;
  for (; block < min(n_full, n_blocks); ++block) step(block, std::false_type{});
  for (; block < n_blocks; ++block) step(block, std::true_type{});

  store_output_rows<T, D>(a, bh, o, row_sum, row_max, rows, scale_log2);
#else
  __trap();  // tensor-core path needs sm_80+; the Python launcher checks the capability
#endif
}

#if !defined(FASTLLM_CUDA_EMULATION)  // the CPU emulator (tests/kernels/cuda_emu) launches the kernel itself

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

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace

#if !defined(FASTLLM_CUDA_EMULATION)

#ifndef FASTLLM_HAVE_SM90A
bool attention_wgmma_compiled() { return false; }
void attention_fwd_wgmma_cuda(int, const AttentionCudaArgs&, uintptr_t, AttentionKernel) {
  throw std::invalid_argument("attention_fwd_cuda: this build has no sm_90a wgmma kernel (architectures without 90)");
}
void wgmma_probe_cuda(int, const WgmmaProbeArgs&, uintptr_t) {
  throw std::invalid_argument("wgmma_probe: this build has no sm_90a kernels (architectures without 90)");
}
#endif

void attention_fwd_cuda(int dtype, const AttentionCudaArgs& args, uintptr_t stream, AttentionKernel kernel) {
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
  // The kernel's row and key indices are 32-bit (pointer offsets stay 64-bit).
  if (args.seq_q > INT_MAX - 2 * kBlockM || args.seq_k > INT_MAX - 2 * kBlockN)
    throw std::invalid_argument("attention_fwd_cuda: sequence lengths must stay below 2^31 - 128");
  if (dtype != 1 && dtype != 2)
    throw std::invalid_argument("attention_fwd_cuda: dtype code must be 1 (float16) or 2 (bfloat16), got " +
                                std::to_string(dtype));
  if (kernel == AttentionKernel::kWgmma || kernel == AttentionKernel::kWgmma64)
    return attention_fwd_wgmma_cuda(dtype, args, stream, kernel);
  if (kernel != AttentionKernel::kMma)
    throw std::invalid_argument("attention_fwd_cuda: kernel must be 1 (mma), 2 (wgmma) or 3 (wgmma64), got " +
                                std::to_string(static_cast<int>(kernel)));
  auto s = reinterpret_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 1: launch<__half>(args, s); break;
    case 2: launch<__nv_bfloat16>(args, s); break;
    default:
      throw std::invalid_argument("attention_fwd_cuda: dtype code must be 1 (float16) or 2 (bfloat16), got " +
                                  std::to_string(dtype));
  }
}

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace fastllm
