// Launcher interface of csrc/cuda/attention.cu (tensor-core forward) and attention_decode.cu
// (split-KV flash-decoding). Torch-free: device pointers, element strides, a cudaStream_t.
// Shapes and semantics: fastllm/kernels/attention/ref.py.
#pragma once

#include <cstdint>

namespace fastllm {

struct AttentionCudaArgs {
  const void* q;   // (B, H, T, D)
  const void* k;   // (B, Hkv, S, D)
  const void* v;   // (B, Hkv, S, D)
  void* out;       // (B, H, T, D)
  float* lse;      // (B, H, T) float32 contiguous, natural log
  // Element strides for (batch, head, position); the last dim is contiguous. Every stride must
  // be a multiple of 8 and every base pointer 16-byte aligned (16-byte vector loads).
  int64_t q_strides[3], k_strides[3], v_strides[3], out_strides[3];
  int64_t batch, heads, kv_heads, seq_q, seq_k, head_dim;
  float scale;
  bool causal;  // bottom-right aligned: query i sees keys j <= i + S - T
};

// Forward kernels: the mma.sync one (attention.cu, sm_80+) and the wgmma one in two tilings
// (attention_wgmma.cu, sm_90a: H100 / H200 only, built when the architectures include 90).
enum class AttentionKernel : int { kMma = 1, kWgmma = 2, kWgmma64 = 3 };

// dtype: 1 float16, 2 bfloat16 (tensor cores, sm_80+); head_dim 64 or 128.
void attention_fwd_cuda(int dtype, const AttentionCudaArgs& args, uintptr_t stream,
                        AttentionKernel kernel = AttentionKernel::kMma);

// Whether this build holds the sm_90a wgmma forward; the launcher behind kWgmma (arguments
// already checked by attention_fwd_cuda).
bool attention_wgmma_compiled();
void attention_fwd_wgmma_cuda(int dtype, const AttentionCudaArgs& args, uintptr_t stream, AttentionKernel kernel);

// wgmma_probe.cu: one wgmma batch over one operand path of the wgmma kernel (mode 0: S = Q K^T,
// a (64, D), b (keys, D); mode 1: O = P V, a = P (64, keys), b = V (keys, D)); row-major 16-bit
// inputs, out row-major float32. Descriptor fields as given (GPU tests search them on failure).
struct WgmmaProbeArgs {
  const void* a;
  const void* b;
  float* out;
  int mode, head_dim, keys;
  uint32_t leading_bytes, stride_bytes;
  int layout;
};
void wgmma_probe_cuda(int dtype, const WgmmaProbeArgs& args, uintptr_t stream);

// One query per sequence (T == 1) against a long cache, the keys split into n_splits chunks of
// keys_per_split (every chunk non-empty). Workspace, float32: partial_out (n_splits, B*H, D),
// partial_max and partial_sum (n_splits, B*H).
struct AttentionDecodeWorkspace {
  float* partial_out;
  float* partial_max;
  float* partial_sum;
  int64_t n_splits, keys_per_split;
};

void attention_decode_cuda(int dtype, const AttentionCudaArgs& args,
                           const AttentionDecodeWorkspace& workspace, uintptr_t stream);

}  // namespace fastllm
