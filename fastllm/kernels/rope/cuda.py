"""The `cuda` RoPE backend: launcher over fastllm._C_cuda.rope (csrc/cuda/rope.cu), on the
current CUDA stream of q's device. Same calling convention as op.py; arguments arrive validated.

A decode step is host-bound (the kernel runs ~3 us), so this path does the least per call: the
stream comes as a raw pointer (no torch.cuda.Stream object, no device context manager: the C++
side makes q's device current for the launch and restores the caller's).
"""

from __future__ import annotations

import torch

from fastllm import _ext
from fastllm.kernels.checks import check_one_device, raw_stream
from fastllm.kernels.rope.cpp import DTYPE_CODES, bhs_strides


def rope_cuda(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              positions: torch.Tensor | None, offset: int, inverse: bool,
              inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    device = check_one_device("rope", q=q, k=k, cos=cos, sin=sin, positions=positions)
    q_out = q if inplace else torch.empty(q.shape, dtype=q.dtype, device=device)
    k_out = k if inplace else torch.empty(k.shape, dtype=k.dtype, device=device)
    pos_ptr, pos_strides = 0, (0, 0)
    if positions is not None:
        pos_ptr, pos_strides = positions.data_ptr(), (positions.stride(0), positions.stride(1))
    batch, seq_len, q_heads, head_dim = q.shape
    index = device.index if device.index is not None else torch.cuda.current_device()
    _ext.cuda().rope.rope(
        DTYPE_CODES[q.dtype],
        q.data_ptr(), q_out.data_ptr(), q_heads, bhs_strides(q), bhs_strides(q_out),
        k.data_ptr(), k_out.data_ptr(), k.shape[2], bhs_strides(k), bhs_strides(k_out),
        cos.data_ptr(), sin.data_ptr(), pos_ptr, pos_strides, offset, batch, seq_len, head_dim,
        inverse, index, raw_stream(index))
    return q_out, k_out
