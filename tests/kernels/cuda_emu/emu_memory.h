// Shared memory, global buffers and cp.async for the CPU block emulator (emu_threads.h).
//
// Shared memory is one array (the kernel's `extern __shared__` symbol) seen through a window whose
// first byte has shared address kWindowOffset, so a kernel's alignment padding is exercised.
// Before each block every byte is 0xFF (a NaN in fp16 / bf16) so reads of bytes nobody wrote
// show up, and the bytes past the launch's dynamic size hold a canary checked after the block.
// cp.async lands at the issuing thread's cp.async.wait_group, the latest moment CUDA allows. Each
// byte written by a landed cp.async or a tracked store (store_shared_16) remembers who wrote it
// and when (the writer's barrier epoch and a global sequence number) and whether the writer has
// since run fence.proxy.async; ldmatrix and the wgmma engine (emu_wgmma.h) check them.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "emu_threads.h"

namespace emu {

constexpr uint32_t kWindowOffset = 0x80;
constexpr size_t kMaxDynamicShared = 232448;  // Hopper's opt-in maximum per block (227 KB)
constexpr size_t kSharedCapacity = kMaxDynamicShared + 1024;
constexpr uint8_t kCanary = 0xA5;

struct ByteState {
  int32_t pending_writer = -1;  // thread whose cp.async to this byte has not landed
  bool written = false;         // by a cp.async that landed or a tracked store, this block
  bool fenced = false;          // its writer ran fence.proxy.async since
  int32_t written_by = -1;
  uint64_t written_epoch = 0, written_seq = 0, fence_epoch = 0;
  // ldmatrix reads: the barrier epoch of the last, and who read in it (kManyReaders: several).
  int32_t read_by = -1;
  uint64_t read_epoch = 0;
};
constexpr int32_t kManyReaders = -2;

struct GlobalBuffer {
  const uint8_t* begin;
  size_t bytes;
};

struct Memory {
  uint8_t* shared = nullptr;  // the kernel's extern __shared__ array
  size_t dynamic_bytes = 0;   // the launch's dynamic shared-memory size
  std::vector<ByteState> state;
  std::vector<GlobalBuffer> globals;
  uint64_t sequence = 0;
};

inline Memory& memory() {
  static Memory instance;
  return instance;
}

inline void reset_shared() {
  Memory& m = memory();
  std::memset(m.shared, 0xFF, m.dynamic_bytes);
  std::memset(m.shared + m.dynamic_bytes, kCanary, kSharedCapacity - m.dynamic_bytes);
  m.state.assign(m.dynamic_bytes, ByteState{});
}

inline void check_canary() {
  Memory& m = memory();
  for (size_t i = m.dynamic_bytes; i < kSharedCapacity; ++i) {
    if (m.shared[i] != kCanary) fail("shared-memory byte %zu written past the launch's %zu bytes", i, m.dynamic_bytes);
  }
}

// The shared-window address of a generic pointer into the kernel's shared array, and back.
inline uint32_t shared_address_of(const void* p) {
  Memory& m = memory();
  const auto* byte = static_cast<const uint8_t*>(p);
  if (byte < m.shared || byte >= m.shared + kSharedCapacity) fail("shared_address of a pointer outside shared memory");
  return static_cast<uint32_t>(byte - m.shared) + kWindowOffset;
}

// Index into the shared array of `bytes` bytes at shared address `address`; out of the launch's
// dynamic shared memory is an error naming `what`.
inline size_t shared_index(uint32_t address, size_t bytes, const char* what) {
  Memory& m = memory();
  if (address < kWindowOffset || address - kWindowOffset + bytes > m.dynamic_bytes) {
    fail("%s at shared address %#x (+%zu bytes) is outside the %zu bytes of dynamic shared memory", what, address,
         bytes, m.dynamic_bytes);
  }
  return address - kWindowOffset;
}

inline void check_global(const void* p, size_t bytes, const char* what) {
  const auto* begin = static_cast<const uint8_t*>(p);
  for (const GlobalBuffer& b : memory().globals) {
    if (begin >= b.begin && begin + bytes <= b.begin + b.bytes) return;
  }
  fail("%s reads %zu bytes at %p, outside every input buffer", what, bytes, p);
}

// ---- cp.async ----------------------------------------------------------------------------------

inline void check_not_read_in_flight(size_t index, const char* what);  // emu_wgmma.h

// A write by the calling thread (`what`: cp.async or a shared store) may go to the 16 bytes at
// `index`: no cp.async into them is still in flight, no wgmma may still read them, and no other
// thread read them by ldmatrix since the last __syncthreads.
inline void check_writable(size_t index, const char* what) {
  Memory& m = memory();
  const ThreadState& t = self();
  for (size_t i = index; i < index + 16; ++i) {
    const ByteState& b = m.state[i];
    if (b.pending_writer >= 0) {
      fail("%s by thread %d to shared address %#zx, where thread %d's cp.async has not landed", what, t.tid,
           i + kWindowOffset, b.pending_writer);
    }
    check_not_read_in_flight(i, what);
    if (b.read_by != -1 && b.read_by != t.tid && b.read_epoch == t.epoch) {
      fail("%s by thread %d overwrites shared address %#zx, read by ldmatrix with no __syncthreads between", what,
           t.tid, i + kWindowOffset);
    }
  }
}

inline void cp_async(uint32_t dst, const void* src, bool valid) {
  if (dst % 16) fail("cp.async to shared address %#x, not 16-byte aligned", dst);
  const size_t index = shared_index(dst, 16, "cp.async destination");
  if (valid) {
    if (reinterpret_cast<uintptr_t>(src) % 16) fail("cp.async from %p, not 16-byte aligned", src);
    check_global(src, 16, "cp.async");
  }
  check_writable(index, "cp.async");
  for (size_t i = index; i < index + 16; ++i) memory().state[i].pending_writer = self().tid;
  self().uncommitted.push_back({dst, src, valid});
}

inline void cp_async_commit_group() {
  ThreadState& t = self();
  t.copy_groups.push_back(std::move(t.uncommitted));
  t.uncommitted.clear();
}

// Stamps 16 bytes at `index` as written now by the calling thread (not yet fenced).
inline void note_write(size_t index) {
  Memory& m = memory();
  ThreadState& t = self();
  ++m.sequence;
  for (size_t i = index; i < index + 16; ++i) {
    ByteState& s = m.state[i];
    s.pending_writer = -1;
    s.written = true;
    s.written_by = t.tid;
    s.fenced = false;
    s.written_epoch = t.epoch;
    s.written_seq = m.sequence;
  }
  t.unfenced.push_back(static_cast<uint32_t>(index) + kWindowOffset);
}

inline void land(const PendingCopy& copy) {
  Memory& m = memory();
  const size_t index = copy.dst - kWindowOffset;
  if (copy.valid) {
    std::memcpy(m.shared + index, copy.src, 16);
  } else {
    std::memset(m.shared + index, 0, 16);
  }
  note_write(index);
}

// A 16-byte st.shared the kernel routes through store_shared_16 (mma_utils.cuh): the same
// bookkeeping as a cp.async that lands at once.
inline void tracked_store(void* dst, const void* value) {
  const uint32_t address = shared_address_of(dst);
  if (address % 16) fail("16-byte shared store at %#x, not 16-byte aligned", address);
  const size_t index = shared_index(address, 16, "shared store");
  check_writable(index, "a shared store");
  std::memcpy(memory().shared + index, value, 16);
  note_write(index);
}

inline void cp_async_wait_groups(size_t pending) {
  ThreadState& t = self();
  while (t.copy_groups.size() > pending) {
    for (const PendingCopy& copy : t.copy_groups.front()) land(copy);
    t.copy_groups.erase(t.copy_groups.begin());
  }
}

inline void fence_proxy_async_shared() {
  Memory& m = memory();
  ThreadState& t = self();
  for (uint32_t dst : t.unfenced) {
    for (size_t i = dst - kWindowOffset; i < dst - kWindowOffset + 16; ++i) {
      m.state[i].fenced = true;
      m.state[i].fence_epoch = t.epoch;
    }
  }
  t.unfenced.clear();
}

inline void check_copies_done() {
  for (const ThreadState& t : runtime().fibers) {
    if (!t.uncommitted.empty() || !t.copy_groups.empty()) {
      fail("thread %d exited with cp.async copies it never waited for", t.tid);
    }
  }
}

// ---- ldmatrix (m8n8.x4, 16-bit) ------------------------------------------------------------------

// A read of shared byte `index` by the calling thread: a cp.async into it must have landed and,
// when another thread issued it, a __syncthreads must separate the two.
inline void note_generic_read(size_t index) {
  ByteState& b = memory().state[index];
  const ThreadState& t = self();
  if (b.pending_writer >= 0) {
    fail("thread %d read shared address %#zx before the cp.async of thread %d landed", t.tid, index + kWindowOffset,
         b.pending_writer);
  }
  if (b.written && b.written_by != t.tid && b.written_epoch >= t.epoch) {
    fail("thread %d read shared address %#zx, written by thread %d with no __syncthreads between", t.tid,
         index + kWindowOffset, b.written_by);
  }
  if (b.read_epoch != t.epoch || b.read_by == -1) {
    b.read_by = t.tid;
  } else if (b.read_by != t.tid) {
    b.read_by = kManyReaders;
  }
  b.read_epoch = t.epoch;
}

// Lanes 8m..8m+7 give the 16-byte rows of matrix m; lane l receives in register m the pair at row
// l / 4, columns 2 (l % 4) .. +1 (trans: rows 2 (l % 4) .. +1 of column l / 4).
inline void ldmatrix_x4(uint32_t* out, uint32_t row_address, bool trans) {
  Warp& warp = own_warp();
  const int lane = self().tid % 32;
  if (row_address % 16) fail("ldmatrix row at %#x, not 16-byte aligned", row_address);
  warp.values[lane] = row_address;
  arrive_and_wait(warp.barrier, trans ? "ldmatrix.trans" : "ldmatrix");
  Memory& m = memory();
  auto element = [&](int matrix, int row, int col) {
    const size_t index = shared_index(warp.values[8 * matrix + row] + 2 * col, 2, "ldmatrix");
    for (size_t i = index; i < index + 2; ++i) note_generic_read(i);
    uint16_t value;
    std::memcpy(&value, m.shared + index, 2);
    return static_cast<uint32_t>(value);
  };
  for (int matrix = 0; matrix < 4; ++matrix) {
    const int a = lane / 4, b = 2 * (lane % 4);
    out[matrix] = trans ? element(matrix, b, a) | element(matrix, b + 1, a) << 16
                        : element(matrix, a, b) | element(matrix, a, b + 1) << 16;
  }
  arrive_and_wait(warp.barrier, trans ? "ldmatrix.trans (read)" : "ldmatrix (read)");
}

}  // namespace emu
