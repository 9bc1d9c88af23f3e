// fastllm._C.core: ISA selection, threads and the scalar conversions other kernels build on.
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/registry.h"
#include "common/half.h"
#include "common/parallel.h"
#include "cpu/isa.h"

namespace fastllm {
namespace {

std::vector<std::string> isa_names(const std::vector<Isa>& isas) {
  std::vector<std::string> names;
  for (Isa isa : isas) names.emplace_back(isa_name(isa));
  return names;
}

py::dict feature_dict() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["f16c"] = f.f16c;
  d["bmi2"] = f.bmi2;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512vl"] = f.avx512vl;
  d["avx512dq"] = f.avx512dq;
  d["avx512vnni"] = f.avx512vnni;
  d["avx512bf16"] = f.avx512bf16;
  return d;
}

// Converts n floats to fp16 bits (and back) on the given threads; used by tests to pin the
// scalar conversion to numpy's, and by Python code that packs fp16 scales without torch.
void fp32_to_fp16_array(uintptr_t src, uintptr_t dst, int64_t n, int n_threads) {
  const float* in = reinterpret_cast<const float*>(src);
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);
  parallel_range(n, 1 << 16, n_threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = fp32_to_fp16(in[i]);
  });
}

void fp16_to_fp32_array(uintptr_t src, uintptr_t dst, int64_t n, int n_threads) {
  const uint16_t* in = reinterpret_cast<const uint16_t*>(src);
  float* out = reinterpret_cast<float*>(dst);
  parallel_range(n, 1 << 16, n_threads, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = fp16_to_fp32(in[i]);
  });
}

const BindingRegistrar registrar("core", [](py::module_& m) {
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        py::arg("name"));
  m.def("supported_isas", [] { return isa_names(supported_isas()); });
  m.def("cpu_features", &feature_dict);
  m.def("hardware_threads", &hardware_threads);
  m.def("torch_openmp_available", &torch_openmp_available);
  m.def("use_torch_openmp", &use_torch_openmp, py::arg("enabled"),
        "run native tasks on torch's OpenMP threads when available (default); returns the previous setting");
  m.def("fp32_to_fp16", &fp32_to_fp16_array, py::arg("src"), py::arg("dst"), py::arg("n"),
        py::arg("n_threads"), py::call_guard<py::gil_scoped_release>());
  m.def("fp16_to_fp32", &fp16_to_fp32_array, py::arg("src"), py::arg("dst"), py::arg("n"),
        py::arg("n_threads"), py::call_guard<py::gil_scoped_release>());
  m.def("parallel_sum_test",
        [](int64_t n_tasks, int n_threads) {
          // Exercises the pool: every task must run exactly once.
          std::vector<int64_t> hits(n_tasks, 0);
          parallel_for(n_tasks, n_threads, [&](int64_t i) { hits[i] += i + 1; });
          int64_t total = 0;
          for (int64_t h : hits) total += h;
          return total;
        },
        py::call_guard<py::gil_scoped_release>());
});

}  // namespace
}  // namespace fastllm
