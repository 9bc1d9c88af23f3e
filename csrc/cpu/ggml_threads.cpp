// GGML matmul threads: torch's OpenMP team when there is one.
//
// Why: torch's CPU ops run on libgomp threads that spin for a few milliseconds after each op
// before they sleep. In a model's forward pass a GGMLLinear runs between torch ops, so a second
// pool's threads land on cores where those threads are still spinning and a batch-1 GEMV
// loses about half its speed (11008 x 4096 Q4_0 on 2 cores: 17 GB/s after a torch op, 30 GB/s
// on torch's threads; bench/RESULTS.md). Running on the very threads torch uses avoids both
// the contention and the wake-up. libgomp is found at run time with dlopen(RTLD_NOLOAD), never
// linked, so nothing changes for a build or a process without it: the tasks then go to
// fastllm's own pool, as they do for one thread or one task, and in a forked child (GNU
// libgomp's team does not survive fork; fastllm's pool renews itself).
#include "cpu/ggml_threads.h"

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>

#include "common/parallel.h"

namespace fastllm {
namespace {

// GOMP_parallel(fn, data, num_threads, flags): runs fn(data) on a team and joins it; the entry
// point GCC emits for `#pragma omp parallel`, stable since GCC 4.9.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

GompParallel find_gomp() {
  void* lib = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
  return lib ? reinterpret_cast<GompParallel>(dlsym(lib, "GOMP_parallel")) : nullptr;
}

std::atomic<bool> g_use_gomp{true};
std::atomic<bool> g_forked{false};

void mark_forked_child() { g_forked.store(true); }
// Registered when the extension loads, so every later fork marks its child.
const int g_atfork = pthread_atfork(nullptr, nullptr, mark_forked_child);

GompParallel gomp() {
  static const GompParallel fn = find_gomp();
  return g_forked.load() ? nullptr : fn;
}

struct Job {
  const std::function<void(int64_t)>* task;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
};

// Every team member takes tasks until none are left; exceptions must not leave an OpenMP region.
void drain(void* data) {
  Job& job = *static_cast<Job*>(data);
  for (int64_t i = job.next.fetch_add(1); i < job.n_tasks; i = job.next.fetch_add(1)) {
    try {
      (*job.task)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.mutex);
      if (!job.error) job.error = std::current_exception();
      job.next.store(job.n_tasks);
    }
  }
}

}  // namespace

bool ggml_torch_openmp_available() { return gomp() != nullptr; }

bool ggml_use_torch_openmp(bool enabled) { return g_use_gomp.exchange(enabled); }

void ggml_run_tasks(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task) {
  const GompParallel team = g_use_gomp.load() ? gomp() : nullptr;
  if (team == nullptr || n_threads <= 1 || n_tasks <= 1) {
    parallel_for(n_tasks, n_threads, task);
    return;
  }
  Job job;
  job.task = &task;
  job.n_tasks = n_tasks;
  team(drain, &job, static_cast<unsigned>(std::min<int64_t>(n_threads, n_tasks)), 0);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace fastllm
