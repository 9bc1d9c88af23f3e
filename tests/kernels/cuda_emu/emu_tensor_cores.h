// Tensor-core instructions for the CPU block emulator: mma.sync m16n8k16 (one warp) and Hopper's
// asynchronous wgmma.mma_async m64nNk16 (one warpgroup of 128 threads), fp16 / bf16 in, fp32
// accumulate. Operand layouts follow tests/kernels/wgmma_spec.py (written from the PTX ISA; its
// docstrings cite the sections), ported here line by line.
//
// wgmma is emulated as the asynchronous instruction it is, and every ordering rule a kernel can
// break is checked instead of being lucky on this machine:
//   - issue: all 128 threads must issue the same instructions (same descriptors, shape, flags) in
//     the same order, after a wgmma.fence that follows their last wait; a thread's accumulator
//     registers become NaN until the wait that completes the batch (a read before it shows), and
//     the A registers (register-operand form) must not change until then;
//   - the instruction runs at the first wait_group that needs it, reading shared memory then: bytes
//     it reads must have landed (cp.async), been published by fence.proxy.async and a
//     __syncthreads before the issue, and not been overwritten since;
//   - a cp.async into bytes an unfinished wgmma reads, or one that completed without a
//     __syncthreads since (stricter than CUDA for the waiting warpgroup itself), is an error.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "emu_memory.h"

namespace emu {

enum class Type { kHalf, kBfloat16 };

inline float half_bits_to_float(uint16_t bits) {
  const float sign = (bits & 0x8000) ? -1.0f : 1.0f;
  const int exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
}

inline float bits_to_float(Type type, uint16_t bits) {
  if (type == Type::kHalf) return half_bits_to_float(bits);
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

// ---- mma.sync.m16n8k16.row.col (one warp) --------------------------------------------------------

struct MmaExchange {
  uint32_t a[32][4], b[32][2];
};

inline MmaExchange& mma_exchange(int warp) {
  static MmaExchange slots[32];  // a block has at most 32 warps; fixed, so references stay valid
  return slots[warp];
}

// c += A B with A 16 x 16 (a0 = A[g][2t..], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..])
// and B 16 x 8 (b0 = B[2t..][g], b1 = B[2t+8..][g]); c0..c3 = C[g][2t], C[g][2t+1], C[g+8][2t],
// C[g+8][2t+1] (g = lane / 4, t = lane % 4).
inline void mma_m16n8k16(Type type, float* c, const uint32_t* a, const uint32_t* b) {
  const int warp = self().tid / 32, lane = self().tid % 32;
  MmaExchange& x = mma_exchange(warp);
  std::memcpy(x.a[lane], a, sizeof(x.a[lane]));
  std::memcpy(x.b[lane], b, sizeof(x.b[lane]));
  arrive_and_wait(own_warp().barrier, "mma.sync");
  auto half = [&](uint32_t word, int which) { return bits_to_float(type, static_cast<uint16_t>(word >> (16 * which))); };
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 2; ++e) {
      A[g][2 * t + e] = half(x.a[l][0], e);
      A[g + 8][2 * t + e] = half(x.a[l][1], e);
      A[g][2 * t + 8 + e] = half(x.a[l][2], e);
      A[g + 8][2 * t + 8 + e] = half(x.a[l][3], e);
      B[2 * t + e][g] = half(x.b[l][0], e);
      B[2 * t + 8 + e][g] = half(x.b[l][1], e);
    }
  }
  arrive_and_wait(own_warp().barrier, "mma.sync (read)");
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
    float sum = 0.0f;
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    c[i] += sum;
  }
}

// ---- wgmma descriptors and operand addresses (wgmma_spec.py) ------------------------------------

struct Descriptor {
  uint32_t start, lbo, sbo;
  int base_offset, swizzle;  // swizzle code: 0 none, 1 128B, 2 64B, 3 32B
};

inline Descriptor decode_descriptor(uint64_t desc) {
  const uint64_t reserved = (0b11ull << 14) | (0b11ull << 30) | (0b111ull << 46) | (0x3FFull << 52);
  if (desc & reserved) fail("wgmma descriptor %#llx has unused bits set", static_cast<unsigned long long>(desc));
  const uint64_t field = (1u << 14) - 1;
  return {static_cast<uint32_t>((desc & field) << 4), static_cast<uint32_t>(((desc >> 16) & field) << 4),
          static_cast<uint32_t>(((desc >> 32) & field) << 4), static_cast<int>((desc >> 49) & 7),
          static_cast<int>(desc >> 62)};
}

inline uint32_t swizzle_row_bytes(int swizzle) {
  static const uint32_t bytes[4] = {16, 128, 64, 32};
  return bytes[swizzle];
}

inline uint32_t swizzled(uint32_t canonical, const Descriptor& f) {
  static const int row_bits[4] = {0, 3, 2, 1};
  const int bits = row_bits[f.swizzle];
  if (bits == 0) return canonical;
  const uint32_t rows = ((canonical - (static_cast<uint32_t>(f.base_offset) << 7)) >> 7) & ((1u << bits) - 1);
  return canonical ^ (rows << 4);
}

// Byte address of operand element (mn, k), 16-bit elements; k_major: the reduction index runs
// along the 16-byte chunks (imm-trans 0), otherwise MN does (imm-trans 1).
inline uint32_t operand_address(const Descriptor& f, int mn, int k, bool k_major) {
  const uint32_t row_bytes = swizzle_row_bytes(f.swizzle);
  uint32_t offset;
  if (k_major) {
    const uint32_t chunk_stride = f.swizzle == 0 ? f.lbo : 16;
    offset = (mn % 8) * row_bytes + (mn / 8) * f.sbo + (k % 8) * 2 + (k / 8) * chunk_stride;
  } else if (f.swizzle == 0) {
    offset = (mn % 8) * 2 + (mn / 8) * f.sbo + (k % 8) * 16 + (k / 8) * f.lbo;
  } else {
    const int per_row = static_cast<int>(row_bytes / 2);
    offset = (mn % 8) * 2 + ((mn % per_row) / 8) * 16 + (mn / per_row) * f.lbo + (k % 8) * row_bytes + (k / 8) * f.sbo;
  }
  return swizzled(f.start + offset, f);
}

// ---- wgmma.mma_async (one warpgroup) -------------------------------------------------------------

constexpr int kMaxWarpgroups = 4;

struct WgmmaOp {
  int id = 0, warpgroup = 0, n = 0, trans_b = 0, scale_d = 0;
  Type type = Type::kHalf;
  bool a_in_registers = false;
  uint64_t desc_a = 0, desc_b = 0;
  int registered = 0;
  float* d[128] = {};
  const uint32_t* a_source[128] = {};
  uint32_t a_copy[128][4] = {};
  uint64_t issue_epoch = UINT64_MAX, issue_seq = 0, exec_epoch = 0;
  bool executed = false;
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
    if (!op.executed || op.exec_epoch >= self().epoch) {
      fail("%s by thread %d overwrites shared address %#zx, which wgmma %d (warpgroup %d) %s", what, self().tid,
           index + kWindowOffset, reader, g,
           op.executed ? "read without a __syncthreads since its wait" : "still reads (not waited for)");
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

// One thread's wgmma.mma_async: d (n / 2 floats) (+)= A B.
inline void wgmma_issue(Type type, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, int trans_b,
                        int scale_d) {
  ThreadState& t = self();
  const int group = t.tid / 128, member = t.tid % 128;
  if (group >= kMaxWarpgroups || runtime().threads % 128) fail("wgmma in a block of %d threads", runtime().threads);
  if (!t.wgmma_fenced) fail("thread %d issued a wgmma without a wgmma.fence since its last wait", t.tid);
  Warpgroup& wg = engine().groups[group];
  const size_t index = t.wgmma_issued++;
  WgmmaOp* op;
  if (index == wg.ops.size()) {
    op = &first_issue(type, n, a != nullptr, desc_a, desc_b, trans_b, scale_d);
  } else {
    op = &engine().ops[static_cast<size_t>(wg.ops[index])];
    if (op->n != n || op->type != type || op->a_in_registers != (a != nullptr) || op->desc_b != desc_b ||
        (a == nullptr && op->desc_a != desc_a) || op->trans_b != trans_b || op->scale_d != scale_d) {
      fail("thread %d's wgmma #%zu differs from its warpgroup's (descriptors %#llx / %#llx vs %#llx / %#llx, "
           "scale_d %d vs %d)",
           t.tid, index, static_cast<unsigned long long>(desc_a), static_cast<unsigned long long>(desc_b),
           static_cast<unsigned long long>(op->desc_a), static_cast<unsigned long long>(op->desc_b), scale_d,
           op->scale_d);
    }
  }
  op->issue_epoch = std::min(op->issue_epoch, t.epoch);
  op->d[member] = d;
  if (a != nullptr) {
    op->a_source[member] = a;
    std::memcpy(op->a_copy[member], a, sizeof(op->a_copy[member]));
  }
  ++op->registered;
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
  if (!s.landed) return;  // written by ordinary stores (or never: 0xFF, a NaN the results show)
  if (s.landed_seq > op.issue_seq) fail("shared %#zx changed while wgmma %d was in flight", address, op.id);
  if (s.landed_epoch >= op.issue_epoch) {
    fail("wgmma %d read shared %#zx, copied with no __syncthreads between the copy and the wgmma", op.id, address);
  }
  if (!s.fenced || s.fence_epoch >= op.issue_epoch) {
    fail("wgmma %d read shared %#zx, copied without a fence.proxy.async before the barrier", op.id, address);
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

inline void execute(WgmmaOp& op) {
  std::vector<float> A(64 * 16), B(static_cast<size_t>(op.n) * 16);
  if (op.a_in_registers) {
    for (int u = 0; u < 128; ++u) {
      if (std::memcmp(op.a_copy[u], op.a_source[u], sizeof(op.a_copy[u])) != 0) {
        fail("thread %d changed the A registers of wgmma %d while it was in flight", op.warpgroup * 128 + u, op.id);
      }
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
    ThreadState& t = thread(op.warpgroup * 128 + u);
    Shadow& shadow = t.in_flight.at(op.d[u]);
    const int warp = u / 32, lane = u % 32;
    for (int reg = 0; reg < op.n / 2; ++reg) {
      const int row = 16 * warp + lane / 4 + 8 * ((reg >> 1) & 1), col = 8 * (reg >> 2) + 2 * (lane % 4) + (reg & 1);
      float sum = 0.0f;
      for (int k = 0; k < 16; ++k) sum += A[row * 16 + k] * B[static_cast<size_t>(col) * 16 + k];
      shadow.values[reg] = (op.scale_d ? shadow.values[reg] : 0.0f) + sum;
    }
    if (--shadow.in_flight == 0) {
      std::memcpy(op.d[u], shadow.values.data(), shadow.values.size() * sizeof(float));
      t.in_flight.erase(op.d[u]);
    }
  }
  op.executed = true;
  op.exec_epoch = self().epoch;
}

inline void wgmma_wait_group(size_t pending) {
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
  }
  t.wgmma_fenced = false;
}

inline void wgmma_fence() { self().wgmma_fenced = true; }

inline void check_wgmma_done() {
  WgmmaEngine& e = engine();
  for (int g = 0; g < kMaxWarpgroups; ++g) {
    if (e.groups[g].executed != e.groups[g].ops.size()) fail("warpgroup %d exited with wgmma in flight", g);
  }
  for (const ThreadState& t : runtime().fibers) {
    if (!t.in_flight.empty()) fail("thread %d exited with wgmma accumulators in flight", t.tid);
  }
}

}  // namespace emu
