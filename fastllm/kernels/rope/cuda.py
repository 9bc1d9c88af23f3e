"""The `cuda` RoPE backend: launcher over fastllm._C_cuda.rope (csrc/cuda/rope.cu), on the
current CUDA stream. Same calling convention as op.py; arguments arrive validated."""

from __future__ import annotations

import torch

from fastllm import _ext
from fastllm.kernels.checks import check_one_device
from fastllm.kernels.rope.cpp import DTYPE_CODES, bhs_strides


def rope_cuda(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              positions: torch.Tensor | None, offset: int, inverse: bool,
              inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    check_one_device("rope", q=q, k=k, cos=cos, sin=sin, positions=positions)
    q_out = q if inplace else torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = k if inplace else torch.empty(k.shape, dtype=k.dtype, device=k.device)
    pos_ptr, pos_strides = 0, [0, 0]
    if positions is not None:
        pos_ptr, pos_strides = positions.data_ptr(), [positions.stride(0), positions.stride(1)]
    batch, seq_len, q_heads, head_dim = q.shape
    with torch.cuda.device(q.device):
        stream = torch.cuda.current_stream(q.device).cuda_stream
        _ext.cuda().rope.rope(
            DTYPE_CODES[q.dtype],
            q.data_ptr(), q_out.data_ptr(), q_heads, bhs_strides(q), bhs_strides(q_out),
            k.data_ptr(), k_out.data_ptr(), k.shape[2], bhs_strides(k), bhs_strides(k_out),
            cos.data_ptr(), sin.data_ptr(), pos_ptr, pos_strides, offset, batch, seq_len, head_dim,
            inverse, stream)
    return q_out, k_out
