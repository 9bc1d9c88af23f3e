// Error handling for CUDA launchers: every launcher ends with FASTLLM_CUDA_CHECK_LAUNCH() so a
// bad configuration surfaces as a Python RuntimeError naming the kernel, not a later crash.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define FASTLLM_CUDA_CHECK(expr)                                                         \
  do {                                                                                   \
    cudaError_t fastllm_err_ = (expr);                                                   \
    if (fastllm_err_ != cudaSuccess)                                                     \
      throw std::runtime_error(std::string(#expr) + ": " + cudaGetErrorString(fastllm_err_)); \
  } while (0)

#define FASTLLM_CUDA_CHECK_LAUNCH(kernel_name)                                           \
  do {                                                                                   \
    cudaError_t fastllm_err_ = cudaGetLastError();                                       \
    if (fastllm_err_ != cudaSuccess)                                                     \
      throw std::runtime_error(std::string("CUDA launch of ") + (kernel_name) + " failed: " + \
                               cudaGetErrorString(fastllm_err_));                        \
  } while (0)
