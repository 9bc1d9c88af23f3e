// The GGML matmul driver: quantize each activation row once, then hand out contiguous runs of
// x16 weight tiles to the threads (common/parallel.h: torch's OpenMP team when loaded). A thread streams its tiles front to back
// (one linear read of the weights, what the hardware prefetchers like) and computes every
// activation row of the pass per tile, so the weights are read once per pass of up to ~100
// rows (rows_per_pass). Plain GGUF rows are repacked tile by tile into a per-thread buffer on
// the way, so both layouts share one kernel.
#include <algorithm>
#include <memory>
#include <vector>

#include "common/check.h"
#include "common/parallel.h"
#include "cpu/ggml.h"
#include "cpu/isa.h"

namespace fastllm {
namespace {

// Tiles per task: small enough that a thread woken late still gets its share, large enough
// that the hand-out (one atomic add) is noise.
int64_t tiles_per_task(int64_t tiles, int n_threads) {
  const int64_t tasks = static_cast<int64_t>(std::max(n_threads, 1)) * 8;
  return std::max<int64_t>(1, (tiles + tasks - 1) / tasks);
}

// Activation rows per pass over the weights: as many as keep their blocks (40 bytes per 32
// values) within ~512 KiB, so that a pass finds them in L2 while the weights stream by. A long
// prompt then costs a few more passes over the weights instead of activations from DRAM.
int64_t rows_per_pass(int64_t m, int64_t nb) {
  const int64_t fit = (int64_t{512} << 10) / (nb * static_cast<int64_t>(sizeof(block_q8_act)));
  return std::min(m, std::max<int64_t>(8, fit / 8 * 8));
}

void quantize_activations(const GgmlKernels& kern, const float* x, int64_t m, int64_t lda,
                          int64_t k, int32_t offset, block_q8_act* act, int n_threads) {
  const int64_t nb = k / QK;
  if (m == 1) {
    kern.quantize_act(x, act, k, offset);
    return;
  }
  const int64_t per_task = std::max<int64_t>(4, (m + 2 * n_threads - 1) / (2 * n_threads));
  parallel_for((m + per_task - 1) / per_task, n_threads, [&](int64_t task) {
    const int64_t end = std::min(m, (task + 1) * per_task);
    for (int64_t i = task * per_task; i < end; ++i) kern.quantize_act(x + i * lda, act + i * nb, k, offset);
  });
}

}  // namespace

const GgmlKernels& ggml_kernels() {
#if defined(FASTLLM_X86)
  switch (active_isa()) {
    case Isa::avx512: return ggml_kernels_avx512;
    case Isa::avx2: return ggml_kernels_avx2;
    case Isa::generic: break;
  }
#endif
  return ggml_kernels_generic;
}

void ggml_matmul(GgmlType type, bool x16, const uint8_t* weight, int64_t n, int64_t k,
                 const float* x, int64_t m, int64_t lda, float* y, int64_t ldo, int n_threads) {
  FASTLLM_CHECK(k > 0 && k % QK == 0, "ggml_matmul: K=", k, " must be a positive multiple of ", QK);
  FASTLLM_CHECK(n > 0 && m >= 0, "ggml_matmul: bad sizes N=", n, " M=", m);
  if (m == 0) return;
  if (n_threads <= 0) n_threads = hardware_threads();
  const GgmlKernels& kern = ggml_kernels();
  const int64_t nb = k / QK;
  std::unique_ptr<block_q8_act[]> act(new block_q8_act[static_cast<size_t>(m * nb)]);
  quantize_activations(kern, x, m, lda, k, weight_offset(type), act.get(), n_threads);

  const auto gemm = type == GgmlType::q4_0 ? kern.gemm_q4_0_x16 : kern.gemm_q8_0_x16;
  const int64_t tiles = x16_tiles(n), tile_bytes = x16_tile_bytes(type, nb);
  const int64_t row_bytes = nb * block_bytes(type), chunk = tiles_per_task(tiles, n_threads);
  const int64_t pass_rows = rows_per_pass(m, nb);
  for (int64_t m0 = 0; m0 < m; m0 += pass_rows) {
    const int64_t pass_m = std::min(pass_rows, m - m0);
    const block_q8_act* a = act.get() + m0 * nb;
    float* out = y + m0 * ldo;
    parallel_for((tiles + chunk - 1) / chunk, n_threads, [&](int64_t task) {
      thread_local std::vector<uint8_t> scratch;
      const int64_t end = std::min(tiles, (task + 1) * chunk);
      for (int64_t t = task * chunk; t < end; ++t) {
        const int rows = static_cast<int>(std::min<int64_t>(X16_ROWS, n - t * X16_ROWS));
        const uint8_t* tile = weight + t * tile_bytes;
        if (!x16) {
          scratch.resize(static_cast<size_t>(tile_bytes));
          kern.repack_tile(type, weight + t * X16_ROWS * row_bytes, row_bytes, rows, nb, scratch.data());
          tile = scratch.data();
        }
        gemm(tile, nb, a, nb, pass_m, out + t * X16_ROWS, ldo, rows);
      }
    });
  }
}

}  // namespace fastllm
