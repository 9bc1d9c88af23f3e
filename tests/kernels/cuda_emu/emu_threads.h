// A CPU emulator of a CUDA thread block (one-dimensional), enough to run this project's attention
// kernels unchanged (compiled by the host compiler with FASTLLM_CUDA_EMULATION defined; the
// headers in csrc/cuda swap their inline PTX for the calls below). Test-only: see
// tests/kernels/test_cuda_emulated.py.
//
// Every CUDA thread of a block is a fiber (ucontext) with its own stack, so the kernel's
// registers are ordinary locals. Fibers run round-robin and switch only at collectives
// (__syncthreads, warp shuffles / votes, wgmma waits), so a run is deterministic. A collective
// completes when every participant reached it; participants that reach different collectives,
// or a round in which no fiber moves, end the run with a message naming what each thread waits on.
// Failures print "emu: <what>" on stderr and exit with status 3.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <vector>

namespace emu {

[[noreturn]] inline void fail(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::fprintf(stderr, "emu: ");
  std::vfprintf(stderr, format, args);
  std::fprintf(stderr, "\n");
  va_end(args);
  std::fflush(stderr);
  std::_Exit(3);  // not exit(): static destructors would free the fiber stack this may run on
}

struct Dim {
  unsigned x, y, z;
};

struct PendingCopy {
  uint32_t dst;  // shared-window byte address
  const void* src;
  bool valid;
};

// An accumulator array of one thread while wgmma batches writing it are in flight: the value the
// batches accumulate into (the registers themselves hold NaN until the wait that completes them).
struct Shadow {
  std::vector<float> values;
  int in_flight = 0;
};

struct ThreadState {
  ucontext_t context;
  int tid = 0;
  bool finished = false;
  const char* waiting_on = "";
  uint64_t epoch = 0;  // block barriers passed
  // cp.async: issued but not committed, then committed groups oldest first; 16-byte chunks that
  // landed since this thread's last fence.proxy.async.
  std::vector<PendingCopy> uncommitted;
  std::vector<std::vector<PendingCopy>> copy_groups;
  std::vector<uint32_t> unfenced;
  // wgmma: instructions issued, groups committed and instructions waited for by this thread,
  // whether a wgmma.fence came after its last wait, and its accumulators in flight.
  size_t wgmma_issued = 0, wgmma_committed = 0, wgmma_waited = 0;
  bool wgmma_fenced = false;
  std::map<float*, Shadow> in_flight;
};

struct Barrier {
  int expected = 0;
  int arrived = 0;
  uint64_t generation = 0;
  const char* site = nullptr;
};

struct Warp {
  Barrier barrier;
  uint32_t values[32];
  int lane_masks[32];
};

constexpr size_t kStackBytes = 256 * 1024;

struct Runtime {
  Dim grid{1, 1, 1}, block{0, 0, 0};
  int threads = 0;
  std::vector<ThreadState> fibers;
  std::vector<char*> stacks;  // kStackBytes each, above an inaccessible guard page
  ucontext_t scheduler;
  int current = -1;
  uint64_t progress = 0;
  Barrier block_barrier;
  std::vector<Warp> warps;
  std::function<void()> body;
  std::function<void()> before_block, after_block;  // the async engines' per-block state
};

inline Runtime& runtime() {
  static Runtime instance;
  return instance;
}
inline ThreadState& self() { return runtime().fibers[runtime().current]; }
inline ThreadState& thread(int tid) { return runtime().fibers[tid]; }

inline void yield_to_scheduler() {
  Runtime& r = runtime();
  swapcontext(&r.fibers[r.current].context, &r.scheduler);
}

// Blocks the calling fiber until every participant of `barrier` arrived at the same site.
inline void arrive_and_wait(Barrier& barrier, const char* site) {
  Runtime& r = runtime();
  if (barrier.arrived == 0) {
    barrier.site = site;
  } else if (std::strcmp(barrier.site, site) != 0) {
    fail("block (%u, %u) thread %d reached %s while others of its group wait in %s (divergent collectives)",
         r.block.x, r.block.y, self().tid, site, barrier.site);
  }
  const uint64_t generation = barrier.generation;
  ++r.progress;
  if (++barrier.arrived == barrier.expected) {
    barrier.arrived = 0;
    ++barrier.generation;
    return;
  }
  self().waiting_on = site;
  while (barrier.generation == generation) yield_to_scheduler();
  self().waiting_on = "";
}

// Spins (yielding) until ready() holds; `what` names the wait for deadlock reports.
template <class Ready>
inline void wait_until(Ready ready, const char* what) {
  self().waiting_on = what;
  while (!ready()) yield_to_scheduler();
  self().waiting_on = "";
}

inline void fiber_entry() {
  Runtime& r = runtime();
  r.body();
  r.fibers[r.current].finished = true;
  ++r.progress;
}

inline void describe_deadlock() {
  Runtime& r = runtime();
  std::fprintf(stderr, "emu: deadlock in block (%u, %u); waiting threads:\n", r.block.x, r.block.y);
  int shown = 0;
  for (const ThreadState& t : r.fibers) {
    if (!t.finished && shown++ < 8) std::fprintf(stderr, "  thread %d in %s\n", t.tid, t.waiting_on);
  }
  std::fflush(stderr);
  std::_Exit(3);
}

inline void run_block(unsigned x, unsigned y) {
  Runtime& r = runtime();
  r.block = {x, y, 0};
  r.block_barrier = Barrier{r.threads};
  r.warps.assign(static_cast<size_t>(r.threads + 31) / 32, Warp{});
  for (Warp& w : r.warps) w.barrier.expected = 32;
  r.fibers.assign(static_cast<size_t>(r.threads), ThreadState{});
  if (r.before_block) r.before_block();
  for (int t = 0; t < r.threads; ++t) {
    ThreadState& fiber = r.fibers[t];
    fiber.tid = t;
    getcontext(&fiber.context);
    fiber.context.uc_stack.ss_sp = r.stacks[t];
    fiber.context.uc_stack.ss_size = kStackBytes;
    fiber.context.uc_link = &r.scheduler;
    makecontext(&fiber.context, fiber_entry, 0);
  }
  for (;;) {
    const uint64_t before = r.progress;
    bool alive = false;
    for (int t = 0; t < r.threads; ++t) {
      if (r.fibers[t].finished) continue;
      r.current = t;
      swapcontext(&r.scheduler, &r.fibers[t].context);
      alive = alive || !r.fibers[t].finished;
    }
    r.current = -1;
    if (!alive) break;
    if (r.progress == before) describe_deadlock();
  }
  if (r.after_block) r.after_block();
}

// A fiber stack with an inaccessible page below it: an overflow faults instead of corrupting the
// neighbouring stack.
inline char* guarded_stack() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* region = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED || mprotect(region, page, PROT_NONE) != 0) fail("cannot map a fiber stack");
  return static_cast<char*>(region) + page;
}

// Runs `body` (the kernel call) for every block of the grid, one block at a time, refusing a
// launch configuration a GPU would refuse.
inline void launch(Dim grid, int threads, std::function<void()> body) {
  Runtime& r = runtime();
  if (threads <= 0 || threads % 32 || threads > 1024) fail("launch with %d threads (32..1024, whole warps)", threads);
  if (grid.x == 0 || grid.y == 0 || grid.y > 65535 || grid.z != 1) {
    fail("launch with grid (%u, %u, %u): y must be 1..65535, z 1", grid.x, grid.y, grid.z);
  }
  r.grid = grid;
  r.threads = threads;
  r.body = std::move(body);
  while (r.stacks.size() < static_cast<size_t>(threads)) r.stacks.push_back(guarded_stack());
  for (unsigned y = 0; y < grid.y; ++y) {
    for (unsigned x = 0; x < grid.x; ++x) run_block(x, y);
  }
}

inline Dim thread_index() { return {static_cast<unsigned>(self().tid), 0, 0}; }
inline Dim block_dim() { return {static_cast<unsigned>(runtime().threads), 1, 1}; }

inline void sync_threads() {
  arrive_and_wait(runtime().block_barrier, "__syncthreads");
  ++self().epoch;
}

inline Warp& own_warp() { return runtime().warps[self().tid / 32]; }

inline void require_full_mask(unsigned mask, const char* what) {
  if (mask != 0xffffffffu) fail("%s with mask %#x: the kernels here only use whole warps", what, mask);
}

// Every lane publishes `value` and receives that of lane source(lane, argument); `argument` must
// be the same in all lanes when `uniform` (the xor form).
template <class Value, class Source>
inline Value shuffle(unsigned mask, Value value, int argument, bool uniform, Source source, const char* what) {
  static_assert(sizeof(Value) == 4, "32-bit shuffles only");
  require_full_mask(mask, what);
  Warp& warp = own_warp();
  const int lane = self().tid % 32;
  std::memcpy(&warp.values[lane], &value, 4);
  warp.lane_masks[lane] = argument;
  arrive_and_wait(warp.barrier, what);
  if (uniform && warp.lane_masks[0] != argument) fail("%s lane masks differ within a warp", what);
  Value out;
  std::memcpy(&out, &warp.values[source(lane, argument) & 31], 4);
  arrive_and_wait(warp.barrier, what);
  return out;
}

template <class Value>
inline Value shuffle_xor(unsigned mask, Value value, int lane_mask) {
  return shuffle(mask, value, lane_mask, true, [](int lane, int m) { return lane ^ m; }, "__shfl_xor_sync");
}

template <class Value>
inline Value shuffle_index(unsigned mask, Value value, int source_lane) {
  return shuffle(mask, value, source_lane, false, [](int, int source) { return source; }, "__shfl_sync");
}

inline bool vote_any(unsigned mask, bool predicate) {
  require_full_mask(mask, "__any_sync");
  Warp& warp = own_warp();
  const int lane = self().tid % 32;
  warp.values[lane] = predicate ? 1u : 0u;
  arrive_and_wait(warp.barrier, "__any_sync");
  bool any = false;
  for (uint32_t v : warp.values) any = any || v != 0;
  arrive_and_wait(warp.barrier, "__any_sync (read)");
  return any;
}

}  // namespace emu
