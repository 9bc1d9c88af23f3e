// fastllm._C_cuda.attention: tensor-core forward and split-KV decoding launchers
// (csrc/cuda/attention.cu, attention_decode.cu).
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings/registry.h"
#include "cuda/attention_cuda.h"

namespace fastllm {
namespace {

using Strides = std::array<int64_t, 3>;

void copy3(int64_t dst[3], const Strides& src) {
  for (int i = 0; i < 3; ++i) dst[i] = src[i];
}

// Shapes: q (B, H, T, D), k and v (B, Hkv, S, D), out (B, H, T, D), lse (B, H, T) float32.
AttentionCudaArgs make_args(uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse,
                            const Strides& q_strides, const Strides& k_strides, const Strides& v_strides,
                            const Strides& out_strides, int64_t batch, int64_t heads, int64_t kv_heads,
                            int64_t seq_q, int64_t seq_k, int64_t head_dim, float scale, bool causal) {
  AttentionCudaArgs a{};
  a.q = reinterpret_cast<const void*>(q);
  a.k = reinterpret_cast<const void*>(k);
  a.v = reinterpret_cast<const void*>(v);
  a.out = reinterpret_cast<void*>(out);
  a.lse = reinterpret_cast<float*>(lse);
  copy3(a.q_strides, q_strides);
  copy3(a.k_strides, k_strides);
  copy3(a.v_strides, v_strides);
  copy3(a.out_strides, out_strides);
  a.batch = batch;
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.seq_q = seq_q;
  a.seq_k = seq_k;
  a.head_dim = head_dim;
  a.scale = scale;
  a.causal = causal;
  return a;
}

const BindingRegistrar registrar("attention", [](py::module_& m) {
  m.def(
      "forward",
      [](int dtype, uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, Strides q_strides,
         Strides k_strides, Strides v_strides, Strides out_strides, int64_t batch, int64_t heads,
         int64_t kv_heads, int64_t seq_q, int64_t seq_k, int64_t head_dim, float scale, bool causal,
         uintptr_t stream, int kernel) {
        attention_fwd_cuda(dtype, make_args(q, k, v, out, lse, q_strides, k_strides, v_strides, out_strides,
                                            batch, heads, kv_heads, seq_q, seq_k, head_dim, scale, causal),
                           stream, static_cast<AttentionKernel>(kernel));
      },
      py::arg("dtype"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
      py::arg("q_strides"), py::arg("k_strides"), py::arg("v_strides"), py::arg("out_strides"),
      py::arg("batch"), py::arg("heads"), py::arg("kv_heads"), py::arg("seq_q"), py::arg("seq_k"),
      py::arg("head_dim"), py::arg("scale"), py::arg("causal"), py::arg("stream"), py::arg("kernel") = 1,
      py::call_guard<py::gil_scoped_release>(),
      "FlashAttention forward on tensor cores (fp16/bf16, head dim 64/128): kernel 1 is mma.sync "
      "(sm_80+), 2 and 3 are wgmma with 128- and 64-row tiles (sm_90a, when wgmma_compiled()).");
  m.def(
      "wgmma_probe",
      [](int dtype, int mode, uintptr_t a, uintptr_t b, uintptr_t out, int head_dim, int keys,
         uint32_t leading_bytes, uint32_t stride_bytes, int layout, uintptr_t stream) {
        const WgmmaProbeArgs args{reinterpret_cast<const void*>(a), reinterpret_cast<const void*>(b),
                                  reinterpret_cast<float*>(out), mode, head_dim, keys, leading_bytes, stride_bytes,
                                  layout};
        wgmma_probe_cuda(dtype, args, stream);
      },
      py::arg("dtype"), py::arg("mode"), py::arg("a"), py::arg("b"), py::arg("out"), py::arg("head_dim"),
      py::arg("keys"), py::arg("leading_bytes"), py::arg("stride_bytes"), py::arg("layout"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "One wgmma batch over one operand path of the wgmma attention kernel (GPU tests; sm_90a builds).");
  m.def("wgmma_compiled", &attention_wgmma_compiled,
        "Whether this build holds the sm_90a (H100 / H200) wgmma attention forward.");
  m.def(
      "decode",
      [](int dtype, uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lse, Strides q_strides,
         Strides k_strides, Strides v_strides, Strides out_strides, int64_t batch, int64_t heads,
         int64_t kv_heads, int64_t seq_k, int64_t head_dim, float scale, uintptr_t partial_out,
         uintptr_t partial_max, uintptr_t partial_sum, int64_t n_splits, int64_t keys_per_split,
         uintptr_t stream) {
        const AttentionDecodeWorkspace w{reinterpret_cast<float*>(partial_out),
                                         reinterpret_cast<float*>(partial_max),
                                         reinterpret_cast<float*>(partial_sum), n_splits, keys_per_split};
        attention_decode_cuda(dtype, make_args(q, k, v, out, lse, q_strides, k_strides, v_strides, out_strides,
                                               batch, heads, kv_heads, 1, seq_k, head_dim, scale, true),
                              w, stream);
      },
      py::arg("dtype"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
      py::arg("q_strides"), py::arg("k_strides"), py::arg("v_strides"), py::arg("out_strides"),
      py::arg("batch"), py::arg("heads"), py::arg("kv_heads"), py::arg("seq_k"), py::arg("head_dim"),
      py::arg("scale"), py::arg("partial_out"), py::arg("partial_max"), py::arg("partial_sum"),
      py::arg("n_splits"), py::arg("keys_per_split"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "Split-KV decoding of one query per sequence against a long cache (fp16/bf16, head dim 64/128).");
});

}  // namespace
}  // namespace fastllm
