// FlashAttention forward on Hopper warpgroup tensor cores (wgmma.mma_async, sm_90a only): the
// same math, arguments and outputs as the mma.sync kernel in attention.cu (ref.py documents them).
// Built only into the sm_90a object (CMakeLists.txt); elsewhere the entry point reports that it
// was not compiled, and cuda.py never picks it.
//
// Two tilings (Tiles below), chosen by the caller (AttentionKernel):
//   kWgmma:   128 query rows (two warpgroups of 64), 128 keys a step, 256 threads, one block per
//             SM (225 KB of shared memory at D = 128): K / V tiles reused by twice the rows.
//   kWgmma64: 64 query rows (one warpgroup), 64 keys a step, 128 threads, two blocks per SM
//             (113 KB each at D = 128): the blocks of an SM run unsynchronised, so one's softmax
//             overlaps the other's matrix products (Triton's fastest Hopper tiling is this one).
//             The faster of the two on the H200 (bench/RESULTS.md), and the automatic choice.
// Grid (cdiv(T, rows), B * H), heaviest query blocks first as in attention.cu. Shared memory,
// every tile 128-byte swizzled (wgmma.cuh): Q, K in three stages and V in three stages. Q is
// staged once with plain loads (sign-flipped when scale < 0, as in attention.cu); K and V stream in
// by cp.async, two steps ahead (whole tiles without per-row checks).
// Step j (one barrier each) issues, as two wgmma batches, S = Q K[j]^T (both operands from shared
// memory) and O += P[j-1] V[j-1] (P from registers, V read MN-major), then copies K[j+2] and
// V[j+1] ahead, and the softmax of block j runs while the tensor cores still add block j - 1:
//   wait for S -> mask (diagonal / tail blocks only), row max, exp2, row sums (in place in S)
//   wait for P V -> rescale O by alpha (skipped when no row max of the warp moved), pack S into P
// The buffers a step refills were last read by the step before, whose wgmma batches every
// warpgroup has waited for before it reaches the barrier.
//
// Napkin math (D = 128, kWgmma): per 128-key block a warpgroup issues 16 wgmma m64n128k16
// (4.2 MFLOP) and ~8 instructions per score for the softmax (64 scores a thread); the tensor
// cores take ~64 cycles per m64n128k16, ~2000 cycles a block for both warpgroups, while a
// warpgroup's softmax costs ~500-1000 issue cycles and overlaps its own and the other's wgmma.
// Registers: O 64 + S 64 + P 32 a thread (kWgmma64: 64 + 32 + 16); 247 / 201 in all at D = 128,
// no spills (tests/kernels/test_cuda_sass.py). The unmasked step is ~410 instructions a thread
// for kWgmma64 (Triton's 64 x 64 forward: ~390). K / V traffic from L2: 64 KB
// per 8.4 MFLOP (kWgmma64: 32 KB per 2.1 MFLOP).
// Tests: tests/kernels/test_cuda_attention_forward.py -m cuda; this source run unchanged on a CPU
// emulator of the block, with wgmma's ordering rules checked: tests/kernels/test_cuda_emulated.py;
// shared-memory layout, descriptor and step-order models (CPU): tests/kernels/test_cuda_wgmma_model.py;
// what ptxas made of it: tests/kernels/test_cuda_sass.py. Benchmark: bench/bench_attention.py.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/attention_cuda.h"
#include "cuda/cuda_check.cuh"
#include "cuda/attention_rows.cuh"
#include "cuda/mma_utils.cuh"
#include "cuda/wgmma.cuh"

namespace fastllm {
namespace {

constexpr int kGroupRows = 64;  // query rows of one warpgroup (wgmma's M)
[[maybe_unused]] constexpr float kLog2e = 1.4426950408889634f;

// A tiling: kGroups warpgroups of 64 query rows, kKeys keys a step, K and V in kStages buffers
// each (copies run kStages - 1 steps ahead of their use).
template <int kGroups, int kKeys, int kStages>
struct Tiles {
  static constexpr int kBlockM = kGroups * kGroupRows;
  static constexpr int kBlockN = kKeys;
  static constexpr int kThreads = kGroups * 128;
  static constexpr int kBlocksPerSm = kGroups == 1 ? 2 : 1;  // __launch_bounds__: the register budget
  static constexpr int kKvStages = kStages;
  static_assert(kStages == 2 || kStages == 3, "the step order below is written for 2 or 3 stages");
};
using WideTiles = Tiles<2, 128, 3>;   // AttentionKernel::kWgmma
using NarrowTiles = Tiles<1, 64, 3>;  // AttentionKernel::kWgmma64

// Byte offsets of the tiles from the 1024-aligned base: Q, K stages 0 .. kKvStages - 1, then V's.
template <int D, class Tile>
struct SharedLayout {
  static constexpr uint32_t kQBytes = Tile::kBlockM * D * 2;
  static constexpr uint32_t kKvBytes = Tile::kBlockN * D * 2;
  static constexpr uint32_t k_tile(int stage) { return kQBytes + stage * kKvBytes; }
  static constexpr uint32_t v_tile(int stage) { return kQBytes + (Tile::kKvStages + stage) * kKvBytes; }
  static constexpr int kBytes = static_cast<int>(kQBytes + 2 * Tile::kKvStages * kKvBytes) + 1024;  // + alignment slack
  static_assert(kQBytes % 1024 == 0 && kKvBytes % 1024 == 0, "tiles stay 1024-byte aligned");
};

// Thread t copies 16-byte chunk t % (D / 8) of rows t / (D / 8) + i * kRowsPerPass. Those rows
// share row % 8, so one swizzled offset plus i * kRowsPerPass * 128 bytes addresses all of them.
template <int D, int kThreads>
struct TileCopy {
  static constexpr int kChunksPerRow = D / 8;
  static constexpr int kRowsPerPass = kThreads / kChunksPerRow;
  static_assert(kRowsPerPass % 8 == 0, "rows of one thread share their swizzle phase");
  int row0, col;
  __device__ TileCopy() : row0(threadIdx.x / kChunksPerRow), col((threadIdx.x % kChunksPerRow) * 8) {}

  // rows x D elements from src (row stride `stride`) into the tile at shared address `tile`;
  // rows at or past rows_left are zero-filled. Whole tiles (most) skip the per-row checks.
  template <int kRows>
  __device__ __forceinline__ void async(uint32_t tile, const uint16_t* src, int64_t stride, int rows_left) const {
    static_assert(kRows % kRowsPerPass == 0, "whole passes");
    const uint32_t dst = tile + swizzled_offset(kRows, row0, col);
    const uint16_t* p = src + row0 * stride + col;
    const int64_t pass_stride = kRowsPerPass * stride;
    if (rows_left >= kRows) {
#pragma unroll
      for (int i = 0; i < kRows / kRowsPerPass; ++i) cp_async_16(dst + i * kRowsPerPass * 128, p + i * pass_stride);
      return;
    }
#pragma unroll
    for (int i = 0; i < kRows / kRowsPerPass; ++i) {
      const bool valid = row0 + i * kRowsPerPass < rows_left;
      cp_async_16(dst + i * kRowsPerPass * 128, valid ? p + i * pass_stride : src, valid);
    }
  }

  // The same through registers, XOR-ing every 16-bit value with `sign` (0 or 0x80008000).
  template <int kRows>
  __device__ __forceinline__ void flipped(uint8_t* tile, const uint16_t* src, int64_t stride, int rows_left,
                                          uint32_t sign) const {
    static_assert(kRows % kRowsPerPass == 0, "whole passes");
    uint8_t* dst = tile + swizzled_offset(kRows, row0, col);
    const uint16_t* p = src + row0 * stride + col;
#pragma unroll
    for (int i = 0; i < kRows / kRowsPerPass; ++i) {
      uint4 value = make_uint4(0, 0, 0, 0);
      if (row0 + i * kRowsPerPass < rows_left) value = *reinterpret_cast<const uint4*>(p);
      value.x ^= sign;
      value.y ^= sign;
      value.z ^= sign;
      value.w ^= sign;
      store_shared_16(dst + i * kRowsPerPass * 128, value);
      p += kRowsPerPass * stride;
    }
  }
};

template <typename T, int D, class Tile>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kBlocksPerSm)
    attention_fwd_wgmma_kernel(AttentionCudaArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(FASTLLM_CUDA_EMULATION)
  constexpr int kBlockM = Tile::kBlockM, kBlockN = Tile::kBlockN;
  constexpr int kStages = Tile::kKvStages;
  using Layout = SharedLayout<D, Tile>;
  extern __shared__ __align__(1024) uint8_t raw_smem[];
  const uint32_t raw_address = shared_address(raw_smem);
  const uint32_t pad = (1024 - (raw_address & 1023)) & 1023;
  uint8_t* smem = raw_smem + pad;
  const uint32_t base = raw_address + pad;

  const int group = Tile::kThreads == 128 ? 0 : threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const int g = lane >> 2, t4 = lane & 3;
  const int m0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBlockM;
  const int seq_q = static_cast<int>(a.seq_q), seq_k = static_cast<int>(a.seq_k);
  const int64_t bh = blockIdx.y;
  const HeadInputs inputs = head_inputs(a, bh);
  const uint16_t *q = inputs.q, *k = inputs.k, *v = inputs.v;
  const int64_t k_step = kBlockN * a.k_strides[2], v_step = kBlockN * a.v_strides[2];

  const TileCopy<D, Tile::kThreads> copy;
  copy.template flipped<kBlockM>(smem, q + m0 * a.q_strides[2], a.q_strides[2], seq_q - m0,
                                 a.scale < 0.0f ? 0x80008000u : 0u);
  copy.template async<kBlockN>(base + Layout::k_tile(0), k, a.k_strides[2], seq_k);
  cp_async_commit();

  const float scale_log2 = fmaxf(fabsf(a.scale) * kLog2e, FLT_MIN);  // see attention.cu
  const int diag = seq_k - seq_q;
  const int row_base = m0 + group * kGroupRows + warp * 16 + g;
  const int rows[2] = {row_base, row_base + 8};
  const int limit[2] = {a.causal ? min(seq_k, rows[0] + diag + 1) : seq_k,
                        a.causal ? min(seq_k, rows[1] + diag + 1) : seq_k};
  const int end = a.causal ? min(seq_k, m0 + kBlockM + diag) : seq_k;
  const int n_blocks = (end + kBlockN - 1) / kBlockN;
  const int n_full = (a.causal ? min(seq_k, m0 + diag + 1) : seq_k) / kBlockN;
  const uint32_t q_tile = base + group * kGroupRows * 128;  // this warpgroup's rows of every column block

  float o[D / 2], s[kBlockN / 2];
  uint32_t p[kBlockN / 16][4];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < kBlockN / 2; ++i) s[i] = 0.0f;  // overwritten (scale_d = 0); defined for the asm
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f}, alpha[2];

  // Copies K[block + kStages - 1] and V[block + kStages - 2] ahead, one commit group (after the
  // barrier: the batches that last read their buffers were waited for by every warpgroup).
  auto copy_ahead = [&](int block) {
    const int k_block = block + kStages - 1, v_block = block + kStages - 2;
    if (k_block < n_blocks) {
      copy.template async<kBlockN>(base + Layout::k_tile(k_block % kStages), k + k_block * k_step, a.k_strides[2],
                                   seq_k - k_block * kBlockN);
    }
    if (v_block < n_blocks) {
      copy.template async<kBlockN>(base + Layout::v_tile(v_block % kStages), v + v_block * v_step, a.v_strides[2],
                                   seq_k - v_block * kBlockN);
    }
    cp_async_commit();
  };
  if constexpr (kStages == 3) copy_ahead(-1);  // K[1], V[0]
  // Steps wait for all but the newest group (kStages - 2 of them); the last P V for everything.
  auto wait_for_copies = [&](auto pending) {
    cp_async_wait<decltype(pending)::value>();
    fence_proxy_async();
    __syncthreads();
  };
  auto issue_scores = [&](int block) {
    const uint32_t k_tile = base + Layout::k_tile(block % kStages);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      Wgmma<T, kBlockN>::template ss<0>(s, k_major_descriptor(q_tile, kBlockM, kk),
                                        k_major_descriptor(k_tile, kBlockN, kk), kk > 0);
    }
    wgmma_commit();
  };
  auto issue_pv = [&](int block) {
    const uint32_t v_tile = base + Layout::v_tile(block % kStages);
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      Wgmma<T, D>::template rs<1>(o, p[kk], mn_major_descriptor(v_tile, kBlockN, kk), 1);
    }
    wgmma_commit();
  };

  // Softmax of block `block` in place in s (attention_rows.cuh).
  auto softmax = [&](int block, auto masked) {
    online_softmax<decltype(masked)::value>(s, block * kBlockN + t4 * 2, limit, row_max, row_sum, alpha, scale_log2);
  };
  // After the P V batch finished: rescale O, turn the new probabilities into P's A fragments
  // (the accumulator of n-tiles 2kk, 2kk + 1 is the A fragment of k-step kk).
  auto rescale_and_pack = [&] {
    rescale_rows(o, alpha);
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      p[kk][0] = MmaOp<T>::pack(s[8 * kk + 0], s[8 * kk + 1]);
      p[kk][1] = MmaOp<T>::pack(s[8 * kk + 2], s[8 * kk + 3]);
      p[kk][2] = MmaOp<T>::pack(s[8 * kk + 4], s[8 * kk + 5]);
      p[kk][3] = MmaOp<T>::pack(s[8 * kk + 6], s[8 * kk + 7]);
    }
  };

  // Pins every register the batches read or write above the fence that must separate them from
  // other instructions' accesses (the compiler would otherwise be free to sink an O rescale or a
  // P pack below it).
  auto fence_registers = [&] {
    keep_in_order(o);
    keep_in_order(s);
    keep_in_order(p);
    wgmma_fence();
  };

  // One step: scores of `block`, and (with_pv) P V of the block before.
  auto step = [&](int block, auto masked, auto with_pv) {
    wait_for_copies(std::integral_constant<int, kStages - 2>{});
    fence_registers();
    issue_scores(block);
    if constexpr (decltype(with_pv)::value) issue_pv(block - 1);
    copy_ahead(block);  // its address math overlaps the batches; it fills buffers they do not read
    wgmma_wait<decltype(with_pv)::value ? 1 : 0>();
    keep_in_order(s);
    // Always taken (the launcher refuses seq_k < 1): ptxas schedules a wgmma wait as early as it
    // can inside a basic block, which would hoist the wait for P V above this softmax and
    // serialise the two; a branch it cannot fold keeps the softmax between the waits (SASS).
    if (seq_k > 0) softmax(block, masked);
    if constexpr (decltype(with_pv)::value) {
      wgmma_wait<0>();
      keep_in_order(o);
      keep_in_order(p);  // the batch read the previous P: its registers stay untouched until here
    }
    rescale_and_pack();
  };

  if (n_full > 0) {
    step(0, std::false_type{}, std::false_type{});
  } else {
    step(0, std::true_type{}, std::false_type{});
  }
  int block = 1;
  for (; block < min(n_full, n_blocks); ++block) step(block, std::false_type{}, std::true_type{});
  for (; block < n_blocks; ++block) step(block, std::true_type{}, std::true_type{});
  wait_for_copies(std::integral_constant<int, 0>{});  // V[n_blocks - 1]
  fence_registers();
  issue_pv(n_blocks - 1);
  wgmma_wait<0>();
  keep_in_order(o);

  store_output_rows<T, D>(a, bh, o, row_sum, row_max, rows, scale_log2);
#else
  __trap();  // sm_90a only; attention_wgmma_compiled() tells the launcher whether this exists
#endif
}

#if !defined(FASTLLM_CUDA_EMULATION)  // the CPU emulator (tests/kernels/cuda_emu) launches the kernel itself

template <typename T, int D, class Tile>
void launch_tiles(const AttentionCudaArgs& a, cudaStream_t stream) {
  constexpr int kBytes = SharedLayout<D, Tile>::kBytes;
  const dim3 grid(static_cast<unsigned>((a.seq_q + Tile::kBlockM - 1) / Tile::kBlockM),
                  static_cast<unsigned>(a.batch * a.heads));
  FASTLLM_CUDA_CHECK(cudaFuncSetAttribute(attention_fwd_wgmma_kernel<T, D, Tile>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  attention_fwd_wgmma_kernel<T, D, Tile><<<grid, Tile::kThreads, kBytes, stream>>>(a);
  FASTLLM_CUDA_CHECK_LAUNCH("attention_fwd_wgmma_kernel");
}

template <typename T, class Tile>
void launch(const AttentionCudaArgs& a, cudaStream_t stream) {
  if (a.head_dim == 64) {
    launch_tiles<T, 64, Tile>(a, stream);
  } else {
    launch_tiles<T, 128, Tile>(a, stream);
  }
}

template <class Tile>
void launch_dtype(int dtype, const AttentionCudaArgs& a, cudaStream_t stream) {
  if (dtype == 1) {
    launch<__half, Tile>(a, stream);
  } else {
    launch<__nv_bfloat16, Tile>(a, stream);
  }
}

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace

#if !defined(FASTLLM_CUDA_EMULATION)

bool attention_wgmma_compiled() { return true; }

// Arguments were checked by attention_fwd_cuda (attention.cu), the only caller.
void attention_fwd_wgmma_cuda(int dtype, const AttentionCudaArgs& args, uintptr_t stream_handle,
                              AttentionKernel kernel) {
  auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  if (kernel == AttentionKernel::kWgmma64) {
    launch_dtype<NarrowTiles>(dtype, args, stream);
  } else {
    launch_dtype<WideTiles>(dtype, args, stream);
  }
}

#endif  // !FASTLLM_CUDA_EMULATION

}  // namespace fastllm
