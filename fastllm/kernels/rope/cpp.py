"""The `cpp` RoPE backend: launcher over fastllm._C.rope (csrc/cpu/rope*.cpp).

Takes the validated arguments of op.py's calling convention, allocates outputs and passes raw
pointers and element strides; the C++ side picks the ISA path and threads over tokens.
"""

from __future__ import annotations

import torch

from fastllm import _ext

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def bhs_strides(t: torch.Tensor) -> list[int]:
    """Element strides for (batch, token, head): a RopeTensor's (csrc/common/rope_tensor.h)."""
    return list(t.stride()[:3])


def rope_cpp(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             positions: torch.Tensor | None, offset: int, inverse: bool,
             inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # empty_like: half the host cost of torch.empty(shape, dtype=...) on a decoding step's tensors
    q_out = q if inplace else torch.empty_like(q, memory_format=torch.contiguous_format)
    k_out = k if inplace else torch.empty_like(k, memory_format=torch.contiguous_format)
    pos_ptr, pos_strides = 0, [0, 0]
    if positions is not None:
        pos_ptr, pos_strides = positions.data_ptr(), [positions.stride(0), positions.stride(1)]
    batch, seq_len, q_heads, head_dim = q.shape
    _ext.cpu().rope.rope(
        DTYPE_CODES[q.dtype],
        q.data_ptr(), q_out.data_ptr(), q_heads, bhs_strides(q), bhs_strides(q_out),
        k.data_ptr(), k_out.data_ptr(), k.shape[2], bhs_strides(k), bhs_strides(k_out),
        cos.data_ptr(), sin.data_ptr(), cos.shape[0], pos_ptr, pos_strides,
        offset, batch, seq_len, head_dim, inverse, _ext.num_threads())
    return q_out, k_out
