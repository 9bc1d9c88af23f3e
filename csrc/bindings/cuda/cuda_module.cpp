// fastllm._C_cuda: the CUDA extension. Families register themselves (see ../registry.h); each
// launcher takes device pointers, sizes and the caller's cudaStream_t as an integer, and checks
// cudaGetLastError() before returning.
#include "bindings/registry.h"

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "fastllm CUDA kernels (torch-free; device pointers and a cudaStream_t in)";
  fastllm::bind_registered_families(m);
}
