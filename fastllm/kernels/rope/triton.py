"""The `triton` RoPE backend: q and k of one token rotated by one program (see ref.py for the math).

Grid: one program per (batch, token). It loads that token's cos/sin row once (float32, D/2 wide,
sign-flipped for the inverse rotation) and walks the q heads, then the k heads, BLOCK_H at a time
as (BLOCK_H, D/2) tiles of the two halves. Math in float32, one rounding at the store, so the
output matches the reference to the last bit of the storage dtype up to FMA contraction.
Memory traffic is the minimum (read q, k once, write once), so on a GPU it runs at bandwidth.
Batch, token and head indices are int64 before they meet a stride (a (B, H, T, D) cache viewed as
(B, T, H, D) puts heads T * D elements apart).
Runs on the CPU in Triton's interpreter (TRITON_INTERPRET=1) for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastllm.kernels.checks import check_one_device, fail, on_device


@triton.jit
def _rotate_heads(x_ptr, out_ptr, x_head_stride, out_head_stride, n_heads, half, c, s, offs_d, d_mask,
                  BLOCK_H: tl.constexpr):
    for h0 in range(0, n_heads, BLOCK_H):
        heads = (h0 + tl.arange(0, BLOCK_H)).to(tl.int64)  # head * stride passes 2^31 on long caches
        mask = (heads[:, None] < n_heads) & d_mask[None, :]
        x1_ptrs = x_ptr + heads[:, None] * x_head_stride + offs_d[None, :]
        x1 = tl.load(x1_ptrs, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(x1_ptrs + half, mask=mask, other=0.0).to(tl.float32)
        lo = x1 * c[None, :] - x2 * s[None, :]
        hi = x2 * c[None, :] + x1 * s[None, :]
        out_ptrs = out_ptr + heads[:, None] * out_head_stride + offs_d[None, :]
        tl.store(out_ptrs, lo.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(out_ptrs + half, hi.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(q_ptr, k_ptr, q_out_ptr, k_out_ptr, cos_ptr, sin_ptr, pos_ptr,
                 seq_len, offset, half, n_q_heads, n_k_heads,
                 q_sb, q_st, q_sh, k_sb, k_st, k_sh,
                 qo_sb, qo_st, qo_sh, ko_sb, ko_st, ko_sh, pos_sb, pos_st,
                 HAS_POSITIONS: tl.constexpr, INVERSE: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    b = row // seq_len
    t = row % seq_len
    if HAS_POSITIONS:
        position = tl.load(pos_ptr + b * pos_sb + t * pos_st)
    else:
        position = offset + t
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < half
    c = tl.load(cos_ptr + position * half + offs_d, mask=d_mask, other=0.0)
    s = tl.load(sin_ptr + position * half + offs_d, mask=d_mask, other=0.0)
    if INVERSE:
        s = -s
    _rotate_heads(q_ptr + b * q_sb + t * q_st, q_out_ptr + b * qo_sb + t * qo_st, q_sh, qo_sh,
                  n_q_heads, half, c, s, offs_d, d_mask, BLOCK_H)
    _rotate_heads(k_ptr + b * k_sb + t * k_st, k_out_ptr + b * ko_sb + t * ko_st, k_sh, ko_sh,
                  n_k_heads, half, c, s, offs_d, d_mask, BLOCK_H)


def _block_heads(n_heads: int, block_d: int) -> int:
    # Keep a tile near 4K elements: enough in flight per program without spilling registers.
    return max(1, min(triton.next_power_of_2(n_heads), 4096 // block_d))


def rope_triton(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                positions: torch.Tensor | None, offset: int, inverse: bool,
                inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        fail("rope", "backend triton: bfloat16 is not supported in Triton's CPU interpreter (it rounds "
                     "wrongly); use float32 or float16")
    device = check_one_device("rope", q=q, k=k, cos=cos, sin=sin, positions=positions)
    batch, seq_len, q_heads, head_dim = q.shape
    q_out = q if inplace else torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = k if inplace else torch.empty(k.shape, dtype=k.dtype, device=k.device)
    if q.numel() == 0 and k.numel() == 0:
        return q_out, k_out
    half = head_dim // 2
    block_d = triton.next_power_of_2(half)
    pos = positions if positions is not None else cos  # any pointer; unused without positions
    pos_strides = (positions.stride(0), positions.stride(1)) if positions is not None else (0, 0)
    with on_device(device):  # Triton launches on the current device, not the tensors'
        _rope_kernel[(batch * seq_len,)](
            q, k, q_out, k_out, cos, sin, pos, seq_len, offset, half, q_heads, k.shape[2],
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            q_out.stride(0), q_out.stride(1), q_out.stride(2), k_out.stride(0), k_out.stride(1),
            k_out.stride(2), *pos_strides,
            HAS_POSITIONS=positions is not None, INVERSE=inverse,
            BLOCK_H=_block_heads(max(q_heads, k.shape[2]), block_d), BLOCK_D=block_d)
    return q_out, k_out
