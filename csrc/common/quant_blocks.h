// GGML quantization blocks, byte for byte as ggml lays them out (ggml-common.h), plus the
// layouts fastllm's CPU kernels use internally.
//
// On-disk (GGUF) blocks of QK = 32 weights:
//   block_q4_0 (18 bytes): fp16 d, then 16 bytes; low nibble of byte j is element j, high nibble
//                          element j + 16; value = (q - 8) * d.
//   block_q8_0 (34 bytes): fp16 d, then 32 int8; value = q * d.
//
// Kernel layouts ("x16": 16 output rows interleaved, repacked once at load time). A tile holds
// rows 16t .. 16t+15 for every block of the row:
//   scales: [nb][16] fp16 (the rows' d for block b), padded to a multiple of 64 bytes,
//   quants: q4_0_x16: [nb][4][16 rows][4 bytes]: chunk h holds native bytes 4h..4h+3 of each row,
//                     i.e. elements 4h..4h+3 in the low nibbles and 16+4h.. in the high nibbles;
//           q8_0_x16: [nb][8][16 rows][4 bytes]: chunk g holds elements 4g..4g+3 of each row, each
//                     stored as q + 128 (an unsigned byte, what vpdpbusd wants on its left).
// Lane r of a 16 x int32 accumulator is output row r, so one broadcast of 4 activation bytes
// feeds 16 rows, and a thread streams one contiguous tile after another. Repacking is a byte
// permutation (plus the q8 sign flip), so the exact GGUF bytes can always be recovered.
//
// Activations are quantized to Q8_0 per 32-block with ggml's reference rounding and stored with
// the correction the unsigned weight offset needs (block_q8_act):
//   sum_j (q_w[j] - offset) * q_a[j] = sum_j u_w[j] * q_a[j] - offset * sum_j q_a[j].
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastllm {

constexpr int QK = 32;           // weights per block, both formats
constexpr int X16_ROWS = 16;     // rows interleaved in a kernel tile

struct block_q4_0 {
  uint16_t d;         // fp16 scale
  uint8_t qs[QK / 2]; // nibbles
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes, like ggml's");

struct block_q8_0 {
  uint16_t d;      // fp16 scale
  int8_t qs[QK];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes, like ggml's");

// One activation block as the matmul kernels read it: d is the fp16-rounded scale widened to
// fp32 (what ggml's block_q8_0 stores), corr = weight offset (8 for q4_0, 128 for q8_0) times the
// sum of the quants, subtracted from the unsigned-weight integer dot.
struct block_q8_act {
  float d;
  int32_t corr;
  int8_t qs[QK];
};
static_assert(sizeof(block_q8_act) == 40, "block_q8_act is 40 bytes");
static_assert(offsetof(block_q8_act, qs) == 8, "block_q8_act quants start at byte 8");

enum class GgmlType : int { q4_0 = 0, q8_0 = 1 };

constexpr int32_t weight_offset(GgmlType t) { return t == GgmlType::q4_0 ? 8 : 128; }
constexpr int64_t block_bytes(GgmlType t) { return t == GgmlType::q4_0 ? 18 : 34; }
// Bytes of quants per block per x16 tile (16 rows).
constexpr int64_t x16_quant_bytes(GgmlType t) { return t == GgmlType::q4_0 ? 256 : 512; }

constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
constexpr int64_t x16_scale_bytes(int64_t nb) { return round_up(nb * X16_ROWS * 2, 64); }
constexpr int64_t x16_tile_bytes(GgmlType t, int64_t nb) {
  return x16_scale_bytes(nb) + nb * x16_quant_bytes(t);
}
constexpr int64_t x16_tiles(int64_t n_rows) { return (n_rows + X16_ROWS - 1) / X16_ROWS; }

}  // namespace fastllm
