// fastllm._C.rope: rotary position embedding over raw pointers (see csrc/cpu/rope.h).
#include <pybind11/stl.h>

#include <array>
#include <cstdint>

#include "bindings/registry.h"
#include "common/check.h"
#include "cpu/rope.h"

namespace fastllm {
namespace {

using Strides = std::array<int64_t, 3>;

// dtype: 0 float32, 1 float16, 2 bfloat16. Strides are in elements for (batch, token, head).
void rope_bind(int dtype, uintptr_t q, uintptr_t q_out, int64_t q_heads, Strides q_strides,
               Strides q_out_strides, uintptr_t k, uintptr_t k_out, int64_t k_heads,
               Strides k_strides, Strides k_out_strides, uintptr_t cos, uintptr_t sin,
               int64_t max_positions, uintptr_t positions, std::array<int64_t, 2> pos_strides,
               int64_t offset, int64_t batch, int64_t seq_len, int64_t head_dim, bool inverse,
               int n_threads) {
  FASTLLM_CHECK(dtype >= 0 && dtype <= 2, "rope: dtype code must be 0, 1 or 2, got ", dtype);
  rope_apply(static_cast<RopeDtype>(dtype), make_rope_tensor(q, q_out, q_heads, q_strides, q_out_strides),
             make_rope_tensor(k, k_out, k_heads, k_strides, k_out_strides), cos, sin, max_positions,
             positions, pos_strides.data(), offset, batch, seq_len, head_dim, inverse, n_threads);
}

const BindingRegistrar registrar("rope", [](py::module_& m) {
  m.def("rope", &rope_bind, py::arg("dtype"), py::arg("q"), py::arg("q_out"), py::arg("q_heads"),
        py::arg("q_strides"), py::arg("q_out_strides"), py::arg("k"), py::arg("k_out"),
        py::arg("k_heads"), py::arg("k_strides"), py::arg("k_out_strides"), py::arg("cos"),
        py::arg("sin"), py::arg("max_positions"), py::arg("positions"), py::arg("pos_strides"),
        py::arg("offset"), py::arg("batch"), py::arg("seq_len"), py::arg("head_dim"),
        py::arg("inverse"), py::arg("n_threads"), py::call_guard<py::gil_scoped_release>(),
        "Rotates q and k (B, T, H, D) in one pass; out pointers may equal the inputs (in place).");
});

}  // namespace
}  // namespace fastllm
