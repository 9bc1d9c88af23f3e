// What a kernel source under FASTLLM_CUDA_EMULATION sees in place of the CUDA device runtime:
// the built-in indices, __syncthreads and the warp intrinsics, and in namespace fastllm the
// functions csrc/cuda/mma_utils.cuh and wgmma.cuh define with inline PTX on a GPU. Include this
// first, then define the kernel's `extern __shared__` array (see emulate_*.cpp), then the .cu file.
#pragma once

#ifndef FASTLLM_CUDA_EMULATION
#error "compile the emulator with -DFASTLLM_CUDA_EMULATION"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "emu_wgmma.h"

#undef __launch_bounds__
#define __launch_bounds__(...)
#define threadIdx (::emu::thread_index())
#define blockIdx (::emu::runtime().block)
#define gridDim (::emu::runtime().grid)
#define blockDim (::emu::block_dim())

using std::max;
using std::min;

inline void __syncthreads() { emu::sync_threads(); }
template <class Value>
inline Value __shfl_xor_sync(unsigned mask, Value value, int lane_mask) {
  return emu::shuffle_xor(mask, value, lane_mask);
}
template <class Value>
inline Value __shfl_sync(unsigned mask, Value value, int source_lane) {
  return emu::shuffle_index(mask, value, source_lane);
}
inline bool __any_sync(unsigned mask, int predicate) { return emu::vote_any(mask, predicate != 0); }
// Byte i of the result is byte (selector >> 4i) & 7 of the 8 bytes y:x (x the low four). The sign-
// replicating forms of prmt (bit 3 of a nibble) are not emulated.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  if (selector & 0xFFFF8888u) emu::fail("__byte_perm selector %#x: only plain byte selects are emulated", selector);
  const uint64_t bytes = (static_cast<uint64_t>(y) << 32) | x;
  unsigned out = 0;
  for (int i = 0; i < 4; ++i) out |= static_cast<unsigned>((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return out;
}
[[noreturn]] inline void __trap() { emu::fail("__trap() reached"); }

namespace emu {

template <class T>
constexpr Type type_of() {
  static_assert(std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value, "fp16 / bf16 only");
  return std::is_same<T, __half>::value ? Type::kHalf : Type::kBfloat16;
}

// Runs `body` (the kernel call) over `grid` with `threads` threads and `shared_bytes` of dynamic
// shared memory at `shared` (the kernel's extern __shared__ array, or nullptr for none), checking
// each block's exit.
inline void launch_kernel(Dim grid, int threads, uint8_t* shared, size_t shared_bytes, std::function<void()> body) {
  if (shared_bytes > kMaxDynamicShared) fail("launch asks for %zu bytes of dynamic shared memory", shared_bytes);
  static uint8_t no_extern_shared[kSharedCapacity];  // kernels with only static __shared__ arrays
  memory().shared = shared != nullptr ? shared : no_extern_shared;
  memory().dynamic_bytes = shared_bytes;
  runtime().before_block = [] {
    reset_shared();
    reset_wgmma();
  };
  runtime().after_block = [] {
    check_canary();
    check_copies_done();
    check_wgmma_done();
  };
  launch(grid, threads, std::move(body));
}

}  // namespace emu

namespace fastllm {

// ---- mma_utils.cuh -------------------------------------------------------------------------------
inline uint32_t shared_address(const void* p) { return emu::shared_address_of(p); }
inline void ldmatrix_x4(uint32_t r[4], uint32_t row) { emu::ldmatrix_x4(r, row, false); }
inline void ldmatrix_x4_trans(uint32_t r[4], uint32_t row) { emu::ldmatrix_x4(r, row, true); }
inline void ldmatrix_x4(uint32_t r[4], const void* row) { ldmatrix_x4(r, shared_address(row)); }
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row) { ldmatrix_x4_trans(r, shared_address(row)); }
inline void cp_async_16(uint32_t dst, const void* src, bool valid) { emu::cp_async(dst, src, valid); }
inline void cp_async_16(uint32_t dst, const void* src) { emu::cp_async(dst, src, true); }
inline void cp_async_16(void* dst, const void* src, bool valid) { emu::cp_async(shared_address(dst), src, valid); }
inline void store_shared_16(void* dst, const uint4& value) { emu::tracked_store(dst, &value); }
inline void cp_async_commit() { emu::cp_async_commit_group(); }
template <int kPending>
inline void cp_async_wait() {
  emu::cp_async_wait_groups(kPending);
}

// ---- wgmma.cuh -----------------------------------------------------------------------------------
inline void wgmma_fence() { emu::wgmma_fence(); }
inline void wgmma_commit() { emu::wgmma_commit_group(); }
template <int kInFlight>
inline void wgmma_wait() {
  emu::wgmma_wait_group(kInFlight);
}
inline void fence_proxy_async() { emu::fence_proxy_async_shared(); }
template <class Registers>
inline void keep_in_order(Registers&) {}

template <typename T, int N>
struct Wgmma {
  template <int kTransB>
  static void ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
    emu::wgmma_issue(emu::type_of<T>(), N, d, nullptr, desc_a, desc_b, kTransB, scale_d);
  }
  template <int kTransB>
  static void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, int scale_d) {
    emu::wgmma_issue(emu::type_of<T>(), N, d, a, 0, desc_b, kTransB, scale_d);
  }
};

}  // namespace fastllm
