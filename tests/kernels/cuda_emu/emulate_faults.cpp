// Small kernels that each break one rule the emulator enforces (emu_wgmma.h, emu_memory.h,
// emu_threads.h), so that tests/kernels/test_cuda_emulated.py can check each rule on its own,
// apart from the attention kernels. `emu_attention fault NAME` runs one; a rule that catches it
// exits with status 3 and its message, the others print what they observed.
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "emu_cuda.h"
#include "cuda/wgmma.cuh"

namespace fastllm {
namespace {

alignas(4096) uint8_t shared[emu::kSharedCapacity];
constexpr uint32_t kOperandBytes = 8192;  // A (64 x 16) at 0, B (64 x 16) at 8192, fp16, 1024-aligned

// Rows of 64 fp16 ones in the swizzled layout wgmma.cuh's descriptors describe, by every thread
// through tracked stores; `fence` and `barrier` publish them.
void store_operands(bool fence, bool barrier) {
  uint4 ones;
  const uint32_t one = 0x3C003C00u;
  ones.x = ones.y = ones.z = ones.w = one;
  for (uint32_t offset = threadIdx.x * 16; offset < 2 * kOperandBytes; offset += blockDim.x * 16) {
    store_shared_16(shared + (1024 - emu::kWindowOffset) + offset, ones);
  }
  if (fence) fence_proxy_async();
  if (barrier) __syncthreads();
}

uint64_t descriptor(uint32_t offset) { return k_major_descriptor(1024 + offset, 64, 0); }

void issue_ss(float (&d)[32]) {
  wgmma_fence();
  Wgmma<__half, 64>::ss<0>(d, descriptor(0), descriptor(kOperandBytes), 0);
  wgmma_commit();
}

float observed[128];

// kernel body, launch (grid, threads, dynamic shared bytes)
struct Fault {
  std::function<void()> body;
  emu::Dim grid{1, 1, 1};
  int threads = 128;
  size_t shared_bytes = 1024 + 2 * kOperandBytes;
};

std::map<std::string, Fault> faults() {
  std::map<std::string, Fault> all;
  all["accumulator-read-before-its-wait"] = {[] {
    store_operands(true, true);
    float d[32] = {};
    issue_ss(d);
    observed[threadIdx.x] = d[0];  // too early: NaN until this thread's own wait
    wgmma_wait<0>();
  }};
  all["wait-in-one-warp-only"] = {[] {
    store_operands(true, true);
    float d[32] = {};
    issue_ss(d);
    if (threadIdx.x < 32) wgmma_wait<0>();
  }};
  all["wait-in-half-a-warp"] = {[] {
    store_operands(true, true);
    float d[32] = {};
    issue_ss(d);
    if (threadIdx.x % 32 < 16) wgmma_wait<0>();
  }};
  all["operand-never-written"] = {[] {
    float d[32] = {};
    issue_ss(d);
    wgmma_wait<0>();
  }};
  all["store-without-proxy-fence"] = {[] {
    store_operands(false, true);
    float d[32] = {};
    issue_ss(d);
    wgmma_wait<0>();
  }};
  all["store-without-barrier"] = {[] {
    store_operands(true, false);
    float d[32] = {};
    issue_ss(d);
    wgmma_wait<0>();
  }};
  all["a-registers-changed-in-flight"] = {[] {
    store_operands(true, true);
    float d[32] = {};
    uint32_t a[4] = {0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u};
    wgmma_fence();
    Wgmma<__half, 64>::rs<0>(d, a, descriptor(kOperandBytes), 0);
    wgmma_commit();
    a[0] = 0;
    wgmma_wait<0>();
  }};
  all["operand-overwritten-in-flight"] = {[] {
    store_operands(true, true);
    float d[32] = {};
    issue_ss(d);
    store_operands(true, true);
    wgmma_wait<0>();
  }};
  all["too-much-shared-memory"] = {[] {}, {1, 1, 1}, 128, emu::kMaxDynamicShared + 16};
  all["grid-too-tall"] = {[] {}, {1, 65536, 1}, 128};
  return all;
}

}  // namespace

int run_fault(const std::string& name) {
  const auto all = faults();
  const auto found = all.find(name);
  if (found == all.end()) emu::fail("unknown fault %s", name.c_str());
  const Fault& fault = found->second;
  for (float& value : observed) value = 0.0f;
  emu::launch_kernel(fault.grid, fault.threads, shared, fault.shared_bytes, fault.body);
  int nan = 0;
  for (float value : observed) nan += std::isnan(value) ? 1 : 0;
  std::printf("completed; %d of 128 early accumulator reads were NaN\n", nan);
  return 0;
}

}  // namespace fastllm
