// The mma.sync forward (csrc/cuda/attention.cu), unchanged, on the CPU block emulator. It has
// passed its GPU tests on H100 and H200, so it also checks the emulator's own conventions.
#include "emu_cuda.h"

namespace fastllm {
namespace {
alignas(4096) uint16_t smem[emu::kSharedCapacity / 2];  // the kernel's extern __shared__ array
}  // namespace
}  // namespace fastllm

#include "cuda/attention.cu"

namespace fastllm {
namespace {

template <typename T, int D>
void emulate(const AttentionCudaArgs& a) {
  const emu::Dim grid{static_cast<unsigned>((a.seq_q + kBlockM - 1) / kBlockM),
                      static_cast<unsigned>(a.batch * a.heads), 1};
  emu::launch_kernel(grid, kThreads, reinterpret_cast<uint8_t*>(smem), shared_bytes<D>(),
                     [&] { attention_fwd_mma_kernel<T, D>(a); });
}

}  // namespace

void emulate_mma(int dtype, const AttentionCudaArgs& a) {
  if (dtype == 1) {
    a.head_dim == 64 ? emulate<__half, 64>(a) : emulate<__half, 128>(a);
  } else {
    a.head_dim == 64 ? emulate<__nv_bfloat16, 64>(a) : emulate<__nv_bfloat16, 128>(a);
  }
}

}  // namespace fastllm
