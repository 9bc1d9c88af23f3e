"""The `triton` RoPE backend: (tokens x heads) tiles of q and k rotated in place or out of place
(see ref.py for the math).

Grid: (token blocks, q head blocks + k head blocks). A program takes BLOCK_T consecutive tokens
(flattened over batch and time) and BLOCK_H heads of q, or of k, as a (BLOCK_T, BLOCK_H, D/2)
tile of each half: it loads the BLOCK_T cos/sin rows once (float32, sign-flipped for the inverse
rotation) and broadcasts them over the heads. Tiles hold ~8 KB per half (4096 16-bit or 2048
float32 elements), so each thread keeps several 16-byte loads in flight; a prefill of 16K tokens
with 32 + 8 heads is ~10K programs of 32 KB read + written each, a decode step 5 tiny ones.
Math in float32, one rounding at the store, so the output matches the reference to the last bit
of the storage dtype up to FMA contraction.

Napkin math: 2 * B*T*(Hq+Hk)*D*sizeof(dtype) bytes (read once, written once); at ~3 TB/s a
(4, 4096, 32, 8, 128) bf16 call is 0.11 ms of traffic. A decode step is bound by the host, so
the launch passes few arguments: out of place the outputs are new contiguous tensors whose
strides the kernel derives itself, in place they are the inputs (INPLACE), which drops 8 of the
launch's arguments (each one costs Triton's launcher work per call).
Batch, token and head indices are int64 before they meet a stride (a (B, H, T, D) cache viewed as
(B, T, H, D) puts heads T * D elements apart).
Runs on the CPU in Triton's interpreter (TRITON_INTERPRET=1) for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastllm.kernels.checks import check_one_device, fail, on_device

# Tile configuration (bench/tune_rope.py sweeps these on a GPU): bytes per half of a tile (x1 and
# x2 each), the most heads a tile spans, warps per program. 8 warps won the sweep on an H200
# (2026-11-26, bf16 (8, 1024, 32, 8, 128) and (4, 4096, 32, 8, 128): 3789 and 3826 GB/s, 4 warps
# 3738 and 3765, a device copy of the same bytes 4062 and 4186).
TILE_BYTES = 8192
MAX_TILE_HEADS = 8
NUM_WARPS = 8


@triton.jit
def _rotate_tile(x_ptr, out_ptr, x_rows, out_rows, rows_mask, n_heads, h0, x_sh, out_sh, c, s,
                 HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    """x_rows, out_rows: (BLOCK_T,) int64 element offsets of each token's head 0."""
    heads = (h0 + tl.arange(0, BLOCK_H)).to(tl.int64)  # head * stride passes 2^31 on long caches
    offs_d = tl.arange(0, BLOCK_D)
    mask = (rows_mask[:, None, None] & (heads < n_heads)[None, :, None]
            & (offs_d < HALF)[None, None, :])
    x_off = x_rows[:, None, None] + (heads * x_sh)[None, :, None] + offs_d[None, None, :]
    x1 = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + x_off + HALF, mask=mask, other=0.0).to(tl.float32)
    c = c[:, None, :]
    s = s[:, None, :]
    lo = x1 * c - x2 * s
    hi = x2 * c + x1 * s
    out_off = out_rows[:, None, None] + (heads * out_sh)[None, :, None] + offs_d[None, None, :]
    tl.store(out_ptr + out_off, lo.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + out_off + HALF, hi.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotate_operand(x_ptr, out_ptr, row, b, t, rows_mask, n_heads, h0, x_sb, x_st, x_sh, c, s,
                    INPLACE: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    x_rows = b * x_sb + t * x_st
    if INPLACE:
        _rotate_tile(x_ptr, x_ptr, x_rows, x_rows, rows_mask, n_heads, h0, x_sh, x_sh, c, s,
                     HALF, BLOCK_H, BLOCK_D)
    else:  # a new contiguous (B, T, H, D) tensor: token `row` starts at row * H * D
        _rotate_tile(x_ptr, out_ptr, x_rows, row * n_heads * (2 * HALF), rows_mask, n_heads, h0,
                     x_sh, 2 * HALF, c, s, HALF, BLOCK_H, BLOCK_D)


@triton.jit(do_not_specialize=["offset"])  # a decode loop's offset changes every step
def _rope_kernel(q_ptr, k_ptr, q_out_ptr, k_out_ptr, cos_ptr, sin_ptr, pos_ptr,
                 rows, seq_len, offset, n_q_heads, n_k_heads,
                 q_sb, q_st, q_sh, k_sb, k_st, k_sh, pos_sb, pos_st,
                 HAS_POSITIONS: tl.constexpr, INVERSE: tl.constexpr, INPLACE: tl.constexpr,
                 HALF: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
                 BLOCK_D: tl.constexpr):
    row = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)  # int32: the launcher keeps rows < 2^31
    rows_mask = row < rows
    b = (row // seq_len).to(tl.int64)
    t = (row % seq_len).to(tl.int64)
    row = row.to(tl.int64)
    if HAS_POSITIONS:
        position = tl.load(pos_ptr + b * pos_sb + t * pos_st, mask=rows_mask, other=0)
    else:
        position = offset + t
    offs_d = tl.arange(0, BLOCK_D)
    cs_mask = rows_mask[:, None] & (offs_d < HALF)[None, :]
    cs_off = position[:, None] * HALF + offs_d[None, :]
    c = tl.load(cos_ptr + cs_off, mask=cs_mask, other=0.0)
    s = tl.load(sin_ptr + cs_off, mask=cs_mask, other=0.0)
    if INVERSE:
        s = -s
    q_blocks = tl.cdiv(n_q_heads, BLOCK_H)
    block = tl.program_id(1)
    if block < q_blocks:
        _rotate_operand(q_ptr, q_out_ptr, row, b, t, rows_mask, n_q_heads, block * BLOCK_H,
                        q_sb, q_st, q_sh, c, s, INPLACE, HALF, BLOCK_H, BLOCK_D)
    else:
        _rotate_operand(k_ptr, k_out_ptr, row, b, t, rows_mask, n_k_heads, (block - q_blocks) * BLOCK_H,
                        k_sb, k_st, k_sh, c, s, INPLACE, HALF, BLOCK_H, BLOCK_D)


def tile_shape(rows: int, q_heads: int, k_heads: int, half: int, element_size: int) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_H, BLOCK_D): up to MAX_TILE_HEADS heads wide, then as many tokens as fill
    TILE_BYTES."""
    block_d = triton.next_power_of_2(half)
    block_h = min(MAX_TILE_HEADS, triton.next_power_of_2(max(q_heads, k_heads, 1)))
    block_t = max(1, TILE_BYTES // element_size // (block_h * block_d))
    return min(block_t, triton.next_power_of_2(max(rows, 1))), block_h, block_d


def rope_triton(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                positions: torch.Tensor | None, offset: int, inverse: bool,
                inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        fail("rope", "backend triton: bfloat16 is not supported in Triton's CPU interpreter (it rounds "
                     "wrongly); use float32 or float16")
    device = check_one_device("rope", q=q, k=k, cos=cos, sin=sin, positions=positions)
    batch, seq_len, q_heads, head_dim = q.shape
    k_heads = k.shape[2]
    q_out = q if inplace else torch.empty(q.shape, dtype=q.dtype, device=device)
    k_out = k if inplace else torch.empty(k.shape, dtype=k.dtype, device=device)
    rows = batch * seq_len
    if rows == 0 or q_heads + k_heads == 0:
        return q_out, k_out
    if rows >= 2**31:
        fail("rope", f"backend triton: B*T = {rows} tokens in one call; at most 2^31 - 1")
    half = head_dim // 2
    block_t, block_h, block_d = tile_shape(rows, q_heads, k_heads, half, q.element_size())
    if positions is None:
        pos, pos_sb, pos_st = cos, 0, 0  # any pointer; unused without positions
    else:
        pos, pos_sb, pos_st = positions, positions.stride(0), positions.stride(1)
    grid = (triton.cdiv(rows, block_t), triton.cdiv(q_heads, block_h) + triton.cdiv(k_heads, block_h))
    with on_device(device):  # Triton launches on the current device, not the tensors'
        _rope_kernel[grid](
            q, k, q_out, k_out, cos, sin, pos, rows, seq_len, offset, q_heads, k_heads,
            *q.stride()[:3], *k.stride()[:3], pos_sb, pos_st,
            HAS_POSITIONS=positions is not None, INVERSE=inverse, INPLACE=inplace, HALF=half,
            BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_D=block_d, num_warps=NUM_WARPS)
    return q_out, k_out
