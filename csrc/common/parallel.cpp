#include "common/parallel.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

namespace fastllm {
namespace {

thread_local bool t_inside_task = false;  // set while a thread runs tasks: nested calls run serially

class ThreadPool {
 public:
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  // Returns false (and runs nothing) when another job holds the pool.
  bool try_run(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) return false;
    const int helpers = static_cast<int>(std::min<int64_t>(n_threads, n_tasks)) - 1;
    ensure_workers(helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      n_tasks_ = n_tasks;
      next_task_.store(0);
      active_helpers_ = helpers;
      pending_helpers_ = helpers;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain(task);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_helpers_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  void ensure_workers(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { worker_loop(index); });
    }
  }

  void drain(const std::function<void(int64_t)>& task) {
    t_inside_task = true;
    drain_tasks(task);
    t_inside_task = false;
  }

  void drain_tasks(const std::function<void(int64_t)>& task) {
    for (int64_t i = next_task_.fetch_add(1); i < n_tasks_; i = next_task_.fetch_add(1)) {
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_task_.store(n_tasks_);  // stop handing out work
      }
    }
  }

  void worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stopping_) return;
        if (index >= active_helpers_) continue;  // this job does not need every worker
        task = task_;
      }
      drain(*task);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_helpers_ == 0) done_.notify_one();
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;      // guards the fields below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  int active_helpers_ = 0;
  int pending_helpers_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// Leaked on purpose: joining threads from a static destructor at interpreter exit can hang.
ThreadPool* g_pool = nullptr;
std::once_flag g_pool_once;

// A forked child (DataLoader workers, multiprocessing) inherits the pool's bookkeeping but not
// its threads; give it a fresh pool instead of one that would wait forever for ghost workers.
void reset_pool_in_child() { g_pool = new ThreadPool(); }

ThreadPool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new ThreadPool();
    pthread_atfork(nullptr, nullptr, reset_pool_in_child);
  });
  return *g_pool;
}

// ---------------------------------------------------------------------------------------------
// torch's OpenMP team. torch's CPU ops run on libgomp threads that spin for milliseconds after
// each op before they sleep. A kernel called between torch ops (a GGMLLinear in a forward pass)
// whose own pool lands on cores where those threads still spin loses about half its speed
// (11008 x 4096 Q4_0 GEMV on 2 cores: 17 GB/s after a torch op on our pool, 30 GB/s on torch's
// threads). So when the process has libgomp loaded, tasks run on that very team. libgomp is
// found with dlopen(RTLD_NOLOAD), never linked: a build or process without it uses the pool.
// GNU libgomp is not fork-safe, so a forked child never enters it and uses the (reset) pool.
// ---------------------------------------------------------------------------------------------

// GOMP_parallel(fn, data, num_threads, flags): runs fn(data) on a team and joins it; the entry
// point GCC emits for `#pragma omp parallel`, stable since GCC 4.9.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

struct TorchTeam {
  GompParallel parallel = nullptr;
  pid_t owner = 0;  // the process that found libgomp
};

const TorchTeam& torch_team() {
  static const TorchTeam team = [] {
    TorchTeam t;
    if (void* lib = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD))
      t.parallel = reinterpret_cast<GompParallel>(dlsym(lib, "GOMP_parallel"));
    t.owner = getpid();
    return t;
  }();
  return team;
}

std::atomic<bool> g_use_torch_team{true};

struct TeamJob {
  const std::function<void(int64_t)>* task;
  int64_t n_tasks;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
};

// Every team member takes tasks until none are left; exceptions must not leave an OpenMP region.
void drain_team_job(void* data) {
  TeamJob& job = *static_cast<TeamJob*>(data);
  t_inside_task = true;
  for (int64_t i = job.next.fetch_add(1); i < job.n_tasks; i = job.next.fetch_add(1)) {
    try {
      (*job.task)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.mutex);
      if (!job.error) job.error = std::current_exception();
      job.next.store(job.n_tasks);
    }
  }
  t_inside_task = false;
}

bool try_run_on_torch_team(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task) {
  if (!g_use_torch_team.load(std::memory_order_relaxed)) return false;
  const TorchTeam& team = torch_team();
  if (team.parallel == nullptr || team.owner != getpid()) return false;
  TeamJob job;
  job.task = &task;
  job.n_tasks = n_tasks;
  team.parallel(drain_team_job, &job, static_cast<unsigned>(std::min<int64_t>(n_threads, n_tasks)), 0);
  if (job.error) std::rethrow_exception(job.error);
  return true;
}

}  // namespace

int hardware_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

bool torch_openmp_available() {
  const TorchTeam& team = torch_team();
  return team.parallel != nullptr && team.owner == getpid();
}

bool use_torch_openmp(bool enabled) { return g_use_torch_team.exchange(enabled); }

void parallel_for(int64_t n_tasks, int n_threads, const std::function<void(int64_t)>& task) {
  if (n_tasks <= 0) return;
  if (n_threads <= 0) n_threads = hardware_threads();
  if (n_threads > 1 && n_tasks > 1 && !t_inside_task) {
    if (try_run_on_torch_team(n_tasks, n_threads, task)) return;
    if (pool().try_run(n_tasks, n_threads, task)) return;
  }
  for (int64_t i = 0; i < n_tasks; ++i) task(i);
}

void parallel_range(int64_t n, int64_t grain, int n_threads,
                    const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  if (n_threads <= 0) n_threads = hardware_threads();
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t n_chunks = std::min<int64_t>(max_chunks, n_threads);
  const int64_t chunk = (n + n_chunks - 1) / n_chunks;
  parallel_for(n_chunks, n_threads, [&](int64_t c) {
    const int64_t begin = c * chunk;
    const int64_t end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  });
}

}  // namespace fastllm
