"""Rotary position embedding, pure PyTorch: the truth every RoPE kernel is tested against.

HF layout (rotate_half over two halves, not interleaved pairs). For a head vector x of size D
at position p, with c = cos[p], s = sin[p] (each D/2 wide, from `rope_tables`):

    x1, x2 = x[:D/2], x[D/2:]
    forward:  out = cat(x1*c - x2*s, x2*c + x1*s)
    inverse:  out = cat(x1*c + x2*s, x2*c - x1*s)      (the transpose rotation: the backward)

Shapes: q (B, T, Hq, D), k (B, T, Hk, D); positions None (token t sits at offset + t), (T,) or
(B, T) int64. The math runs in float32 and rounds once to the input dtype, like the kernels.
"""

from __future__ import annotations

import torch


def rope_tables(max_positions: int, head_dim: int, theta: float = 10000.0,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin float32 tables of shape (max_positions, head_dim // 2), HF's inv_freq."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float()
                                / head_dim))
    positions = torch.arange(max_positions, dtype=torch.float32, device=device)
    freqs = torch.outer(positions, inv_freq)  # (max_positions, D/2)
    return freqs.cos(), freqs.sin()


def gather_tables(cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor | None, offset: int,
                  seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin rows for every token, shaped to broadcast over (B, T, H, D/2)."""
    if positions is None:
        positions = torch.arange(offset, offset + seq_len, device=cos.device)
    index = positions.long()
    c, s = cos[index], sin[index]  # (T, D/2) or (B, T, D/2)
    if c.dim() == 2:
        c, s = c.unsqueeze(0), s.unsqueeze(0)
    return c.unsqueeze(2), s.unsqueeze(2)  # (1 or B, T, 1, D/2)


def rotate_ref(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, inverse: bool = False,
               upcast: bool = True) -> torch.Tensor:
    """One tensor rotated; `upcast=False` computes in x's own dtype (the low-precision reference)."""
    compute = torch.promote_types(x.dtype, torch.float32) if upcast else x.dtype
    xf = x.to(compute)
    c, s = c.to(compute), s.to(compute)
    if inverse:
        s = -s
    x1, x2 = xf.chunk(2, dim=-1)
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def rope_ref(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             positions: torch.Tensor | None = None, offset: int = 0, inverse: bool = False,
             upcast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_rot, k_rot), new contiguous tensors of q's and k's shapes and dtypes."""
    c, s = gather_tables(cos, sin, positions, offset, q.shape[1])
    return rotate_ref(q, c, s, inverse, upcast), rotate_ref(k, c, s, inverse, upcast)


def rope_ref_backend(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                     positions: torch.Tensor | None, offset: int, inverse: bool,
                     inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The dispatcher's `ref` implementation (see op.py for the calling convention)."""
    q_rot, k_rot = rope_ref(q, k, cos, sin, positions, offset, inverse)
    if inplace:
        q.copy_(q_rot)
        k.copy_(k_rot)
        return q, k
    return q_rot, k_rot
