// The sm_90a wgmma forward (csrc/cuda/attention_wgmma.cu), unchanged, on the CPU block emulator.
#include "emu_cuda.h"

namespace fastllm {
namespace {
alignas(4096) uint8_t raw_smem[emu::kSharedCapacity];  // the kernel's extern __shared__ array
}  // namespace
}  // namespace fastllm

#include "cuda/attention_wgmma.cu"

namespace fastllm {
namespace {

template <typename T, int D, class Tile>
void emulate(const AttentionCudaArgs& a) {
  constexpr int kBytes = SharedLayout<D, Tile>::kBytes;
  const emu::Dim grid{static_cast<unsigned>((a.seq_q + Tile::kBlockM - 1) / Tile::kBlockM),
                      static_cast<unsigned>(a.batch * a.heads), 1};
  emu::launch_kernel(grid, Tile::kThreads, raw_smem, kBytes, [&] { attention_fwd_wgmma_kernel<T, D, Tile>(a); });
}

template <class Tile>
void emulate_tiles(int dtype, const AttentionCudaArgs& a) {
  if (dtype == 1) {
    a.head_dim == 64 ? emulate<__half, 64, Tile>(a) : emulate<__half, 128, Tile>(a);
  } else {
    a.head_dim == 64 ? emulate<__nv_bfloat16, 64, Tile>(a) : emulate<__nv_bfloat16, 128, Tile>(a);
  }
}

}  // namespace

void emulate_wgmma(int dtype, const AttentionCudaArgs& a, bool narrow) {
  if (narrow) {
    emulate_tiles<NarrowTiles>(dtype, a);
  } else {
    emulate_tiles<WideTiles>(dtype, a);
  }
}

}  // namespace fastllm
