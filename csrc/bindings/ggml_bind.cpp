// fastllm._C.ggml: GGML Q4_0 / Q8_0 quantization, repacking, dot products and matmul.
// Pointers arrive as integers from tensor.data_ptr(); Python checks dtypes, shapes and
// contiguity (fastllm/kernels/ggml/cpp.py). Every call that does real work releases the GIL.
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <utility>

#include "bindings/registry.h"
#include "common/check.h"
#include "common/parallel.h"
#include "cpu/ggml.h"

namespace fastllm {
namespace {

GgmlType parse_type(const std::string& name) {
  if (name == "q4_0") return GgmlType::q4_0;
  if (name == "q8_0") return GgmlType::q8_0;
  fail("unknown GGML type '", name, "'; expected q4_0 or q8_0");
}

void check_k(int64_t k) {
  FASTLLM_CHECK(k > 0 && k % QK == 0, "row length ", k, " is not a positive multiple of ", QK);
}

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// rows x k floats -> rows x (k / 32) blocks.
void quantize(const std::string& type_name, uintptr_t src, uintptr_t dst, int64_t rows, int64_t k,
              int n_threads) {
  const GgmlType type = parse_type(type_name);
  check_k(k);
  const int64_t row_bytes = k / QK * block_bytes(type);
  parallel_range(rows, 16, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = ptr<const float>(src) + r * k;
      uint8_t* y = ptr<uint8_t>(dst) + r * row_bytes;
      if (type == GgmlType::q4_0) quantize_row_q4_0_ref(x, reinterpret_cast<block_q4_0*>(y), k);
      else quantize_row_q8_0_ref(x, reinterpret_cast<block_q8_0*>(y), k);
    }
  });
}

void dequantize(const std::string& type_name, uintptr_t src, uintptr_t dst, int64_t rows, int64_t k,
                int n_threads) {
  const GgmlType type = parse_type(type_name);
  check_k(k);
  const int64_t row_bytes = k / QK * block_bytes(type);
  parallel_range(rows, 16, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* x = ptr<const uint8_t>(src) + r * row_bytes;
      float* y = ptr<float>(dst) + r * k;
      if (type == GgmlType::q4_0) dequantize_row_q4_0(reinterpret_cast<const block_q4_0*>(x), y, k);
      else dequantize_row_q8_0(reinterpret_cast<const block_q8_0*>(x), y, k);
    }
  });
}

// (number of tiles, bytes per tile) of the x16 layout for an n x k matrix.
std::pair<int64_t, int64_t> x16_shape(const std::string& type_name, int64_t n, int64_t k) {
  check_k(k);
  return {x16_tiles(n), x16_tile_bytes(parse_type(type_name), k / QK)};
}

void repack(const std::string& type_name, uintptr_t src, uintptr_t dst, int64_t n, int64_t k,
            int n_threads) {
  const GgmlType type = parse_type(type_name);
  check_k(k);
  const int64_t nb = k / QK, row_bytes = nb * block_bytes(type), tile_bytes = x16_tile_bytes(type, nb);
  parallel_range(x16_tiles(n), 4, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int rows = static_cast<int>(std::min<int64_t>(X16_ROWS, n - t * X16_ROWS));
      ggml_kernels().repack_tile(type, ptr<const uint8_t>(src) + t * X16_ROWS * row_bytes, row_bytes,
                                 rows, nb, ptr<uint8_t>(dst) + t * tile_bytes);
    }
  });
}

void unpack(const std::string& type_name, uintptr_t src, uintptr_t dst, int64_t n, int64_t k,
            int n_threads) {
  const GgmlType type = parse_type(type_name);
  check_k(k);
  const int64_t nb = k / QK, row_bytes = nb * block_bytes(type), tile_bytes = x16_tile_bytes(type, nb);
  parallel_range(x16_tiles(n), 4, n_threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int rows = static_cast<int>(std::min<int64_t>(X16_ROWS, n - t * X16_ROWS));
      unpack_tile_x16(type, ptr<const uint8_t>(src) + t * tile_bytes, rows, nb,
                      ptr<uint8_t>(dst) + t * X16_ROWS * row_bytes, row_bytes);
    }
  });
}

void matmul(const std::string& type_name, bool x16, uintptr_t weight, int64_t n, int64_t k,
            uintptr_t x, int64_t m, int64_t lda, uintptr_t y, int64_t ldo, int n_threads) {
  ggml_matmul(parse_type(type_name), x16, ptr<const uint8_t>(weight), n, k, ptr<const float>(x), m,
              lda, ptr<float>(y), ldo, n_threads);
}

// x: k / 32 weight blocks of `type_name`, y: k / 32 q8_0 blocks.
float vec_dot(const std::string& type_name, int64_t k, uintptr_t x, uintptr_t y) {
  check_k(k);
  const GgmlKernels& kern = ggml_kernels();
  if (parse_type(type_name) == GgmlType::q4_0)
    return kern.vec_dot_q4_0_q8_0(k, ptr<const block_q4_0>(x), ptr<const block_q8_0>(y));
  return kern.vec_dot_q8_0_q8_0(k, ptr<const block_q8_0>(x), ptr<const block_q8_0>(y));
}

// The activation blocks the matmul builds (40 bytes per block, see block_q8_act); for tests.
void quantize_act(uintptr_t x, uintptr_t out, int64_t k, int32_t offset) {
  check_k(k);
  ggml_kernels().quantize_act(ptr<const float>(x), ptr<block_q8_act>(out), k, offset);
}

const BindingRegistrar registrar("ggml", [](py::module_& m) {
  using py::arg;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.attr("block_size") = QK;
  m.attr("tile_rows") = X16_ROWS;
  m.attr("act_block_bytes") = static_cast<int>(sizeof(block_q8_act));
  m.def("type_size", [](const std::string& t) { return block_bytes(parse_type(t)); }, arg("type"));
  m.def("weight_offset", [](const std::string& t) { return weight_offset(parse_type(t)); }, arg("type"));
  m.def("quantize", &quantize, arg("type"), arg("src"), arg("dst"), arg("rows"), arg("k"),
        arg("n_threads"), nogil);
  m.def("dequantize", &dequantize, arg("type"), arg("src"), arg("dst"), arg("rows"), arg("k"),
        arg("n_threads"), nogil);
  m.def("x16_shape", &x16_shape, arg("type"), arg("n"), arg("k"));
  m.def("repack", &repack, arg("type"), arg("src"), arg("dst"), arg("n"), arg("k"), arg("n_threads"), nogil);
  m.def("unpack", &unpack, arg("type"), arg("src"), arg("dst"), arg("n"), arg("k"), arg("n_threads"), nogil);
  m.def("matmul", &matmul, arg("type"), arg("x16"), arg("weight"), arg("n"), arg("k"), arg("x"),
        arg("m"), arg("lda"), arg("y"), arg("ldo"), arg("n_threads"), nogil);
  m.def("vec_dot", &vec_dot, arg("type"), arg("k"), arg("x"), arg("y"), nogil);
  m.def("quantize_act", &quantize_act, arg("x"), arg("out"), arg("k"), arg("offset"), nogil);
});

}  // namespace
}  // namespace fastllm
