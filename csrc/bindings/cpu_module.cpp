// fastllm._C: the CPU extension. Families register themselves (see registry.h).
#include "bindings/registry.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastllm CPU kernels (torch-free; pointers, sizes and strides in, GIL released)";
  fastllm::bind_registered_families(m);
}
