// A small persistent thread pool, like ggml's: native kernels split work into tasks and run them
// on `n_threads` threads (the caller included). Python passes torch.get_num_threads(), so one
// knob controls torch and fastllm alike. We avoid OpenMP because torch wheels bundle their own
// libgomp and two OpenMP runtimes in one process oversubscribe the cores.
#pragma once

#include <cstdint>
#include <functional>

namespace fastllm {

// Runs task(i) for every i in [0, n_tasks) using up to n_threads threads, the calling thread
// included, and returns when all are done. Tasks are handed out dynamically. If the pool is
// busy (a concurrent or nested call), the tasks run serially on the caller: never a deadlock.
// The first exception thrown by a task is rethrown on the caller after all tasks finish.
void parallel_for(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task);

// Splits [0, n) into contiguous chunks of at least `grain` items, one or more per thread, and
// calls body(begin, end) for each.
void parallel_range(int64_t n, int64_t grain, int n_threads,
                    const std::function<void(int64_t, int64_t)>& body);

// The number of hardware threads, used when a caller passes n_threads <= 0.
int hardware_threads();

}  // namespace fastllm
