// fastllm._C_cuda.device: device count, compute capability and the runtime version we built with.
#include "bindings/registry.h"

namespace fastllm {

int cuda_device_count();
int cuda_compute_capability(int device);
int cuda_runtime_version();

namespace {
const BindingRegistrar registrar("device", [](py::module_& m) {
  m.def("device_count", &cuda_device_count);
  m.def("compute_capability", &cuda_compute_capability, py::arg("device"));
  m.def("runtime_version", &cuda_runtime_version);
});
}  // namespace

}  // namespace fastllm
