// The split-KV decoding kernels (csrc/cuda/attention_decode.cu), unchanged, on the CPU block
// emulator. Their shared memory is static `__shared__` arrays, which become function statics
// here: one copy, shared by the threads of the block being run.
#include "emu_cuda.h"

#undef __shared__
#define __shared__ static

#include "cuda/attention_decode.cu"

namespace fastllm {
namespace {

template <typename T, int D>
void emulate(const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w) {
  const int64_t chunks = (a.heads / a.kv_heads + kMaxGroup - 1) / kMaxGroup;
  const emu::Dim split_grid{static_cast<unsigned>(w.n_splits), static_cast<unsigned>(a.batch * a.kv_heads * chunks), 1};
  emu::launch_kernel(split_grid, kThreads, nullptr, 0, [&] { attention_decode_split_kernel<T, D>(a, w, chunks); });
  const emu::Dim combine_grid{static_cast<unsigned>(a.batch * a.heads), 1, 1};
  emu::launch_kernel(combine_grid, kCombineThreads, nullptr, 0, [&] { attention_decode_combine_kernel<T, D>(a, w); });
}

}  // namespace

void emulate_decode(int dtype, const AttentionCudaArgs& a, const AttentionDecodeWorkspace& w) {
  if (dtype == 1) {
    a.head_dim == 64 ? emulate<__half, 64>(a, w) : emulate<__half, 128>(a, w);
  } else {
    a.head_dim == 64 ? emulate<__nv_bfloat16, 64>(a, w) : emulate<__nv_bfloat16, 128>(a, w);
  }
}

}  // namespace fastllm
