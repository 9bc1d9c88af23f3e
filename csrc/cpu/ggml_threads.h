// Where the GGML matmul runs its tasks: on torch's own OpenMP threads when the process has
// torch's libgomp loaded, else on fastllm's pool (common/parallel.h). See ggml_threads.cpp.
#pragma once

#include <cstdint>
#include <functional>

namespace fastllm {

// Runs task(i) for i in [0, n_tasks) on up to n_threads threads (the caller included), handing
// tasks out dynamically; rethrows the first exception a task throws.
void ggml_run_tasks(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task);

// Whether torch's libgomp was found, and the switch to use it (returns the previous setting).
bool ggml_torch_openmp_available();
bool ggml_use_torch_openmp(bool enabled);

}  // namespace fastllm
