"""The `triton` attention backend: launchers for the FlashAttention-2 kernels in triton_fwd.py and
triton_bwd.py, with the calling convention of op.py.

On a GPU the block sizes are autotuned per (head dim, causal, precision, length bucket); in the
interpreter (TRITON_INTERPRET=1, CPU tests) one fixed small configuration runs, so short test
sequences still cross several blocks and the masking paths are exercised. float32 inputs use
exact (IEEE) float32 dot products, never TF32, so float32 training matches the reference.
"""

from __future__ import annotations

import os

import torch
import triton

from fastllm.kernels.attention.triton_bwd import (
    attention_bwd_delta_kernel,
    attention_bwd_dkdv_kernel,
    attention_bwd_dq_kernel,
)
from fastllm.kernels.attention.triton_fwd import attention_fwd_kernel, attention_fwd_kernel_tuned

# Any head dim in [16, 128] divisible by 8 works (tiles are padded to a power of two); tuned for
# 64 and 128. Larger heads would not fit the tiles in shared memory.
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 128
# Interpreter (CPU) tile; on a GPU the forward is autotuned and the backward uses BACKWARD_GPU.
INTERPRETER_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 32}
BACKWARD_GPU = {"dkdv": {"BLOCK_M": 32, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
                "dq": {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 3}}


def unsupported_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    """Why this backend cannot take these tensors, or None."""
    head_dim = q.shape[-1]
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM or head_dim % 8:
        return (f"head dim {head_dim} is not supported by the triton kernels (multiples of 8 in "
                f"[{MIN_HEAD_DIM}, {MAX_HEAD_DIM}])")
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        return "bfloat16 is not supported in Triton's CPU interpreter (use float32 or float16)"
    return None


def _interpreting(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" or os.environ.get("TRITON_INTERPRET", "") == "1"


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def attention_triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    out = torch.empty((batch, heads, seq_q, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, seq_q), dtype=torch.float32, device=q.device)
    args = (q, k, v, out, lse, scale, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, heads // kv_heads, seq_q, seq_k)
    meta = {"CAUSAL": causal, "HEAD_DIM": head_dim, "BLOCK_D": triton.next_power_of_2(head_dim),
            "PRECISION": _precision(q.dtype)}
    if _interpreting(q):
        grid = (triton.cdiv(seq_q, INTERPRETER_BLOCKS["BLOCK_M"]), batch * heads)
        attention_fwd_kernel[grid](*args, **meta, **INTERPRETER_BLOCKS)
    else:
        grid = lambda cfg: (triton.cdiv(seq_q, cfg["BLOCK_M"]), batch * heads)
        attention_fwd_kernel_tuned[grid](*args, **meta)
    return out, lse


def attention_triton_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              out: torch.Tensor, lse: torch.Tensor, grad_lse: torch.Tensor | None,
                              causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    block_d = triton.next_power_of_2(head_dim)
    interpreting = _interpreting(q)
    dkdv_cfg = INTERPRETER_BLOCKS if interpreting else BACKWARD_GPU["dkdv"]
    dq_cfg = INTERPRETER_BLOCKS if interpreting else BACKWARD_GPU["dq"]

    delta = torch.empty_like(lse)
    delta_block = 32 if interpreting else 64
    attention_bwd_delta_kernel[(triton.cdiv(seq_q, delta_block), batch * heads)](
        out, grad_out, grad_lse if grad_lse is not None else lse, delta, *_strides(out), *_strides(grad_out),
        heads, seq_q, HAS_DLSE=grad_lse is not None, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=delta_block)

    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    meta = {"CAUSAL": causal, "HEAD_DIM": head_dim, "BLOCK_D": block_d, "PRECISION": _precision(q.dtype)}
    attention_bwd_dkdv_kernel[(triton.cdiv(seq_k, dkdv_cfg["BLOCK_N"]), batch * kv_heads)](
        q, k, v, grad_out, lse, delta, dk, dv, scale, *_strides(q), *_strides(k), *_strides(v),
        *_strides(grad_out), *_strides(dk), *_strides(dv), heads, kv_heads, heads // kv_heads, seq_q, seq_k,
        **meta, **dkdv_cfg)
    attention_bwd_dq_kernel[(triton.cdiv(seq_q, dq_cfg["BLOCK_M"]), batch * heads)](
        q, k, v, grad_out, lse, delta, dq, scale, *_strides(q), *_strides(k), *_strides(v),
        *_strides(grad_out), *_strides(dq), heads, heads // kv_heads, seq_q, seq_k, **meta, **dq_cfg)
    return dq, dk, dv
