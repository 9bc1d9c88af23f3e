// Hopper's asynchronous wgmma.mma_async m64nNk16 (one warpgroup of 128 threads) for the CPU block
// emulator, fp16 / bf16 in, fp32 accumulate, operands addressed as emu_tensor_cores.h decodes them.
//
// wgmma is emulated as the asynchronous instruction it is, and every ordering rule a kernel can
// break is checked instead of being lucky on this machine:
//   - wgmma.fence, commit_group and wait_group are warp collectives (.sync.aligned): every lane of
//     a warp must reach them together;
//   - issue: all 128 threads must issue the same instructions (same descriptors, shape, flags) in
//     the same order and commit the same groups, after a wgmma.fence that follows their last
//     wait; a thread's accumulator registers read NaN until its own wait completes the batch,
//     and its A registers (register-operand form) must not change until then;
//   - the product is computed at the first wait that needs it, reading shared memory then: bytes
//     it reads must have been written (cp.async, or a tracked store), published by
//     fence.proxy.async and a __syncthreads before the issue, and not overwritten since;
//   - a write (cp.async or tracked store) into bytes a wgmma reads is an error until every thread
//     of the warpgroup has waited for it and a __syncthreads has followed (stricter than CUDA for
//     the waiting warpgroup itself);
//   - a thread may not exit with wgmma it issued and did not wait for.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "emu_tensor_cores.h"

namespace emu {

constexpr int kMaxWarpgroups = 4;

struct WgmmaOp {
  int id = 0, warpgroup = 0, n = 0, trans_b = 0, scale_d = 0;
  Type type = Type::kHalf;
  bool a_in_registers = false;
  uint64_t desc_a = 0, desc_b = 0;
  int registered = 0;  // threads that issued it
  float* d[128] = {};
  const uint32_t* a_source[128] = {};
  uint32_t a_copy[128][4] = {};
  uint64_t issue_epoch = UINT64_MAX, issue_seq = 0;
  int waited = 0;  // threads whose own wait covered it, the latest of those waits' epochs
  uint64_t last_wait_epoch = 0;
  std::vector<uint32_t> a_addresses, b_addresses;  // element addresses, A row-major 64 x 16, B n x 16
};

struct Warpgroup {
  std::vector<int> ops;           // ids, issue order
  std::vector<size_t> group_end;  // ops before the end of each committed group
  size_t executed = 0;
};

struct WgmmaEngine {
  std::deque<WgmmaOp> ops;
  Warpgroup groups[kMaxWarpgroups];
  std::vector<std::vector<int32_t>> last_reader;  // per warpgroup, per shared byte
};

inline WgmmaEngine& engine() {
  static WgmmaEngine instance;
  return instance;
}

inline void reset_wgmma() {
  WgmmaEngine& e = engine();
  e.ops.clear();
  for (Warpgroup& g : e.groups) g = Warpgroup{};
  e.last_reader.assign(kMaxWarpgroups, std::vector<int32_t>(memory().dynamic_bytes, -1));
}

inline void check_not_read_in_flight(size_t index, const char* what) {
  WgmmaEngine& e = engine();
  for (int g = 0; g < kMaxWarpgroups; ++g) {
    const int32_t reader = e.last_reader[g][index];
    if (reader < 0) continue;
    const WgmmaOp& op = e.ops[static_cast<size_t>(reader)];
    if (op.waited < 128 || op.last_wait_epoch >= self().epoch) {
      fail("%s by thread %d overwrites shared address %#zx, which wgmma %d (warpgroup %d) %s", what, self().tid,
           index + kWindowOffset, reader, g,
           op.waited < 128 ? "still reads (not waited for by all its threads)"
                           : "read without a __syncthreads since its wait");
    }
  }
}

inline std::vector<uint32_t> operand_addresses(uint64_t desc, int rows, bool k_major, const char* what) {
  const Descriptor f = decode_descriptor(desc);
  std::vector<uint32_t> addresses;
  addresses.reserve(static_cast<size_t>(rows) * 16);
  for (int mn = 0; mn < rows; ++mn) {
    for (int k = 0; k < 16; ++k) {
      const uint32_t address = operand_address(f, mn, k, k_major);
      if (address % 2) fail("wgmma %s element (%d, %d) at odd address %#x", what, mn, k, address);
      shared_index(address, 2, what);
      addresses.push_back(address);
    }
  }
  return addresses;
}

inline void note_reads(const WgmmaOp& op, const std::vector<uint32_t>& addresses) {
  Memory& m = memory();
  for (uint32_t address : addresses) {
    for (size_t i = address - kWindowOffset; i < address - kWindowOffset + 2; ++i) {
      if (m.state[i].pending_writer >= 0) {
        fail("wgmma %d issued on shared address %#zx, whose cp.async (thread %d) has not landed", op.id,
             i + kWindowOffset, m.state[i].pending_writer);
      }
      engine().last_reader[op.warpgroup][i] = op.id;
    }
  }
}

inline WgmmaOp& first_issue(Type type, int n, bool a_in_registers, uint64_t desc_a, uint64_t desc_b, int trans_b,
                            int scale_d) {
  WgmmaEngine& e = engine();
  const int group = self().tid / 128;
  WgmmaOp& op = e.ops.emplace_back();
  op.id = static_cast<int>(e.ops.size()) - 1;
  op.warpgroup = group;
  op.type = type;
  op.n = n;
  op.a_in_registers = a_in_registers;
  op.desc_a = desc_a;
  op.desc_b = desc_b;
  op.trans_b = trans_b;
  op.scale_d = scale_d;
  op.issue_seq = memory().sequence;
  if (!a_in_registers) op.a_addresses = operand_addresses(desc_a, 64, true, "A operand");
  op.b_addresses = operand_addresses(desc_b, n, trans_b == 0, "B operand");
  note_reads(op, op.a_addresses);
  note_reads(op, op.b_addresses);
  e.groups[group].ops.push_back(op.id);
  return op;
}

inline WgmmaOp& matching_op(size_t index, Type type, int n, const uint32_t* a, uint64_t desc_a, uint64_t desc_b,
                            int trans_b, int scale_d) {
  const ThreadState& t = self();
  WgmmaOp& op = engine().ops[static_cast<size_t>(engine().groups[t.tid / 128].ops[index])];
  if (op.n != n || op.type != type || op.a_in_registers != (a != nullptr) || op.desc_b != desc_b ||
      (a == nullptr && op.desc_a != desc_a) || op.trans_b != trans_b || op.scale_d != scale_d) {
    fail("thread %d's wgmma #%zu differs from its warpgroup's (descriptors %#llx / %#llx vs %#llx / %#llx, "
         "scale_d %d vs %d)",
         t.tid, index, static_cast<unsigned long long>(desc_a), static_cast<unsigned long long>(desc_b),
         static_cast<unsigned long long>(op.desc_a), static_cast<unsigned long long>(op.desc_b), scale_d, op.scale_d);
  }
  return op;
}

// One thread's wgmma.mma_async: d (n / 2 floats) (+)= A B.
inline void wgmma_issue(Type type, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, int trans_b,
                        int scale_d) {
  ThreadState& t = self();
  const int group = t.tid / 128, member = t.tid % 128;
  if (group >= kMaxWarpgroups || runtime().threads % 128) fail("wgmma in a block of %d threads", runtime().threads);
  if (!t.wgmma_fenced) fail("thread %d issued a wgmma without a wgmma.fence since its last wait", t.tid);
  const size_t index = t.wgmma_issued++;
  WgmmaOp& op = index == engine().groups[group].ops.size()
                    ? first_issue(type, n, a != nullptr, desc_a, desc_b, trans_b, scale_d)
                    : matching_op(index, type, n, a, desc_a, desc_b, trans_b, scale_d);
  op.issue_epoch = std::min(op.issue_epoch, t.epoch);
  op.d[member] = d;
  if (a != nullptr) {
    op.a_source[member] = a;
    std::memcpy(op.a_copy[member], a, sizeof(op.a_copy[member]));
  }
  ++op.registered;
  auto found = t.in_flight.find(d);
  if (found == t.in_flight.end()) {
    Shadow shadow;
    shadow.values.assign(d, d + n / 2);
    found = t.in_flight.emplace(d, std::move(shadow)).first;
    for (int i = 0; i < n / 2; ++i) d[i] = NAN;
  }
  ++found->second.in_flight;
}

inline void wgmma_commit_group() {
  arrive_and_wait(own_warp().barrier, "wgmma.commit_group");
  ThreadState& t = self();
  Warpgroup& wg = engine().groups[t.tid / 128];
  const size_t group = t.wgmma_committed++;
  if (group == wg.group_end.size()) {
    wg.group_end.push_back(t.wgmma_issued);
  } else if (wg.group_end[group] != t.wgmma_issued) {
    fail("thread %d committed wgmma group %zu after %zu instructions, its warpgroup after %zu", t.tid, group,
         t.wgmma_issued, wg.group_end[group]);
  }
}

inline void check_operand_byte(const WgmmaOp& op, size_t index) {
  const ByteState& s = memory().state[index];
  const size_t address = index + kWindowOffset;
  if (s.pending_writer >= 0) fail("wgmma %d read shared %#zx before its cp.async landed", op.id, address);
  if (!s.written) fail("wgmma %d read shared %#zx, which nothing wrote", op.id, address);
  if (s.written_seq > op.issue_seq) fail("shared %#zx changed while wgmma %d was in flight", address, op.id);
  if (s.written_epoch >= op.issue_epoch) {
    fail("wgmma %d read shared %#zx, written with no __syncthreads between the write and the wgmma", op.id, address);
  }
  if (!s.fenced || s.fence_epoch >= op.issue_epoch) {
    fail("wgmma %d read shared %#zx, written without a fence.proxy.async before the barrier", op.id, address);
  }
}

inline float operand_value(const WgmmaOp& op, uint32_t address) {
  const size_t index = address - kWindowOffset;
  check_operand_byte(op, index);
  check_operand_byte(op, index + 1);
  uint16_t bits;
  std::memcpy(&bits, memory().shared + index, 2);
  return bits_to_float(op.type, bits);
}

inline void check_a_registers(const WgmmaOp& op, int member) {
  if (op.a_in_registers && std::memcmp(op.a_copy[member], op.a_source[member], sizeof(op.a_copy[member])) != 0) {
    fail("thread %d changed the A registers of wgmma %d while it was in flight", op.warpgroup * 128 + member, op.id);
  }
}

// The product of `op` into every thread's accumulator shadow; registers change at each thread's
// own wait (complete_for_self).
inline void execute(WgmmaOp& op) {
  std::vector<float> A(64 * 16), B(static_cast<size_t>(op.n) * 16);
  if (op.a_in_registers) {
    for (int u = 0; u < 128; ++u) {
      check_a_registers(op, u);
      const int warp = u / 32, lane = u % 32;
      for (int reg = 0; reg < 4; ++reg) {
        for (int half = 0; half < 2; ++half) {
          const int row = 16 * warp + lane / 4 + 8 * (reg & 1), col = 8 * (reg >> 1) + 2 * (lane % 4) + half;
          A[row * 16 + col] = bits_to_float(op.type, static_cast<uint16_t>(op.a_copy[u][reg] >> (16 * half)));
        }
      }
    }
  } else {
    for (size_t i = 0; i < A.size(); ++i) A[i] = operand_value(op, op.a_addresses[i]);
  }
  for (size_t i = 0; i < B.size(); ++i) B[i] = operand_value(op, op.b_addresses[i]);
  for (int u = 0; u < 128; ++u) {
    Shadow& shadow = thread(op.warpgroup * 128 + u).in_flight.at(op.d[u]);
    const int warp = u / 32, lane = u % 32;
    for (int reg = 0; reg < op.n / 2; ++reg) {
      const int row = 16 * warp + lane / 4 + 8 * ((reg >> 1) & 1), col = 8 * (reg >> 2) + 2 * (lane % 4) + (reg & 1);
      float sum = 0.0f;
      for (int k = 0; k < 16; ++k) sum += A[row * 16 + k] * B[static_cast<size_t>(col) * 16 + k];
      shadow.values[reg] = (op.scale_d ? shadow.values[reg] : 0.0f) + sum;
    }
  }
}

// The calling thread's wait covered `op`: its accumulators take the results once no batch writing
// them is left in flight for this thread.
inline void complete_for_self(WgmmaOp& op) {
  ThreadState& t = self();
  const int member = t.tid % 128;
  check_a_registers(op, member);
  ++op.waited;
  op.last_wait_epoch = std::max(op.last_wait_epoch, t.epoch);
  Shadow& shadow = t.in_flight.at(op.d[member]);
  if (--shadow.in_flight == 0) {
    std::memcpy(op.d[member], shadow.values.data(), shadow.values.size() * sizeof(float));
    t.in_flight.erase(op.d[member]);
  }
}

inline void wgmma_wait_group(size_t pending) {
  arrive_and_wait(own_warp().barrier, "wgmma.wait_group");
  ThreadState& t = self();
  Warpgroup& wg = engine().groups[t.tid / 128];
  if (t.wgmma_committed > pending) {
    const size_t end = wg.group_end[t.wgmma_committed - pending - 1];
    wait_until(
        [&] {
          for (size_t i = wg.executed; i < end; ++i) {
            if (engine().ops[static_cast<size_t>(wg.ops[i])].registered < 128) return false;
          }
          return true;
        },
        "wgmma.wait_group");
    ++runtime().progress;
    while (wg.executed < end) execute(engine().ops[static_cast<size_t>(wg.ops[wg.executed++])]);
    for (; t.wgmma_waited < end; ++t.wgmma_waited) complete_for_self(engine().ops[static_cast<size_t>(wg.ops[t.wgmma_waited])]);
  }
  t.wgmma_fenced = false;
}

inline void wgmma_fence() {
  arrive_and_wait(own_warp().barrier, "wgmma.fence");
  self().wgmma_fenced = true;
}

inline void check_wgmma_done() {
  for (const ThreadState& t : runtime().fibers) {
    if (t.wgmma_waited != t.wgmma_issued || !t.in_flight.empty()) {
      fail("thread %d exited with wgmma it did not wait for (%zu issued, %zu waited)", t.tid, t.wgmma_issued,
           t.wgmma_waited);
    }
  }
}

}  // namespace emu
