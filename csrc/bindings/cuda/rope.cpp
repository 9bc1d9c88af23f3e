// fastllm._C_cuda.rope: the CUDA RoPE launcher (see csrc/cuda/rope.cu).
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings/registry.h"
#include "cuda/rope_cuda.h"

namespace fastllm {
namespace {

using Strides = std::array<int64_t, 3>;

void rope_bind(int dtype, uintptr_t q, uintptr_t q_out, int64_t q_heads, Strides q_strides,
               Strides q_out_strides, uintptr_t k, uintptr_t k_out, int64_t k_heads,
               Strides k_strides, Strides k_out_strides, uintptr_t cos, uintptr_t sin,
               uintptr_t positions, std::array<int64_t, 2> pos_strides, int64_t offset,
               int64_t batch, int64_t seq_len, int64_t head_dim, bool inverse, int device,
               uintptr_t stream) {
  RopeCudaArgs args{};
  args.q = make_rope_tensor(q, q_out, q_heads, q_strides, q_out_strides);
  args.k = make_rope_tensor(k, k_out, k_heads, k_strides, k_out_strides);
  args.cos = reinterpret_cast<const float*>(cos);
  args.sin = reinterpret_cast<const float*>(sin);
  args.positions = reinterpret_cast<const int64_t*>(positions);
  args.pos_strides[0] = pos_strides[0];
  args.pos_strides[1] = pos_strides[1];
  args.offset = offset;
  args.batch = batch;
  args.seq_len = seq_len;
  args.head_dim = head_dim;
  args.inverse = inverse;
  rope_cuda(dtype, args, device, stream);
}

const BindingRegistrar registrar("rope", [](py::module_& m) {
  m.def("rope", &rope_bind, py::arg("dtype"), py::arg("q"), py::arg("q_out"), py::arg("q_heads"),
        py::arg("q_strides"), py::arg("q_out_strides"), py::arg("k"), py::arg("k_out"),
        py::arg("k_heads"), py::arg("k_strides"), py::arg("k_out_strides"), py::arg("cos"),
        py::arg("sin"), py::arg("positions"), py::arg("pos_strides"), py::arg("offset"),
        py::arg("batch"), py::arg("seq_len"), py::arg("head_dim"), py::arg("inverse"),
        py::arg("device"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
        "Rotates q and k (B, T, H, D) on CUDA device `device` in one launch on `stream` (a "
        "cudaStream_t of that device).");
});

}  // namespace
}  // namespace fastllm
