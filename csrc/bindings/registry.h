// Self-registering binding families. Each csrc/bindings/<family>_bind.cpp (or cuda/<family>.cpp)
// defines its functions and registers them with
//
//   static const fastllm::BindingRegistrar registrar("ggml", [](py::module_& m) { m.def(...); });
//
// and the module init creates one submodule per family (fastllm._C.ggml, fastllm._C.bpe, ...).
// No central list to edit, so kernel families are added without touching shared files.
// Every binding that does real work releases the GIL: py::call_guard<py::gil_scoped_release>().
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fastllm {

namespace py = pybind11;

using BindingFunction = std::function<void(py::module_&)>;

// One registry per extension module (plain `inline`, not `static`, so every translation unit
// shares it); a function-local static so registrars can run during static initialisation.
inline std::vector<std::pair<std::string, BindingFunction>>& binding_families() {
  static std::vector<std::pair<std::string, BindingFunction>> families;
  return families;
}

struct BindingRegistrar {
  BindingRegistrar(const char* family, BindingFunction bind) {
    binding_families().emplace_back(family, std::move(bind));
  }
};

// Creates the submodules in a stable (sorted) order.
inline void bind_registered_families(py::module_& m) {
  auto families = binding_families();
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [name, bind] : families) {
    py::module_ sub = m.def_submodule(name.c_str());
    bind(sub);
  }
}

}  // namespace fastllm
