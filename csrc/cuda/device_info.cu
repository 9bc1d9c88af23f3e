// Device facts for fastllm.kernels.info() and for kernels that pick tile sizes per architecture.
#include <cuda_runtime.h>

#include "cuda/cuda_check.cuh"

namespace fastllm {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

// Returns major * 10 + minor for the given device.
int cuda_compute_capability(int device) {
  int major = 0, minor = 0;
  FASTLLM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FASTLLM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

int cuda_runtime_version() {
  int version = 0;
  FASTLLM_CUDA_CHECK(cudaRuntimeGetVersion(&version));
  return version;
}

}  // namespace fastllm
