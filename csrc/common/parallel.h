// Parallel loops for native kernels: work is split into tasks run on `n_threads` threads (the
// caller included). Python passes torch.get_num_threads(), so one knob controls torch and
// fastllm alike. Tasks run on torch's own OpenMP team when the process has libgomp loaded (no
// fight with its spinning threads, see parallel.cpp), else on a small persistent pool like
// ggml's. We never link an OpenMP runtime ourselves: two runtimes oversubscribe the cores.
#pragma once

#include <cstdint>
#include <functional>

namespace fastllm {

// Runs task(i) for every i in [0, n_tasks) using up to n_threads threads, the calling thread
// included, and returns when all are done. Tasks are handed out dynamically. A nested call, or
// one made while the pool is busy, runs its tasks serially on the caller: never a deadlock.
// The first exception thrown by a task is rethrown on the caller after all tasks finish.
void parallel_for(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task);

// Splits [0, n) into contiguous chunks of at least `grain` items, one or more per thread, and
// calls body(begin, end) for each.
void parallel_range(int64_t n, int64_t grain, int n_threads,
                    const std::function<void(int64_t, int64_t)>& body);

// The number of hardware threads, used when a caller passes n_threads <= 0.
int hardware_threads();

// Whether torch's libgomp team is usable in this process, and the switch to use it (on by
// default; returns the previous setting). Results never depend on the executor.
bool torch_openmp_available();
bool use_torch_openmp(bool enabled);

}  // namespace fastllm
