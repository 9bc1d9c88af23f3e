"""The `triton` attention backend: launchers for the FlashAttention-2 kernels in triton_fwd.py and
triton_bwd.py, with the calling convention of op.py.

Tile sizes come from a table per kernel and head dim (below), not from autotuning, so the GPU
launches go through exactly the code the interpreter tests run; when a GPU's shared memory cannot
hold a configuration (Triton raises OutOfResources at compile time) the next, smaller one is
tried and remembered. In the interpreter (TRITON_INTERPRET=1, CPU tests) small tiles run, so
short test sequences still cross several blocks and every masking path is exercised. float32
inputs use exact (IEEE) float32 dot products, never TF32, so float32 training matches the
reference. Triton launches on the current CUDA device and stream, so each launcher makes the
tensors' device current (and refuses tensors on different devices) first.
"""

from __future__ import annotations

import os

import torch
import triton
from triton.runtime.errors import OutOfResources

from fastllm.kernels.attention.triton_bwd import (
    attention_bwd_delta_kernel,
    attention_bwd_dkdv_kernel,
    attention_bwd_dq_kernel,
)
from fastllm.kernels.attention.triton_fwd import attention_fwd_kernel
from fastllm.kernels.checks import check_one_device, on_device

# Any head dim in [16, 128] divisible by 8 works (tiles are padded to a power of two; the table
# below has entries for <= 64 and <= 128). Larger heads would not fit the tiles in shared memory.
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 128
MAX_GRID_Y = 65535  # the grids put B * H (B * Hkv for dk/dv) on their second axis


def _cfg(block_m, block_n, warps, stages):
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": warps, "num_stages": stages}


# GPU candidates per (kernel, head-dim class, element bytes), best first. The first 16-bit entries
# are the fastest of bench/tune_attention.py's sweep on an H100 80GB HBM3 (2026-11-26, Triton 3.6,
# bf16, causal, T = S = 4096, 16 heads; figures in bench/RESULTS.md); the rest are smaller
# fallbacks for GPUs with less shared memory (sm_86/89 have 100 KB), tried when Triton raises
# OutOfResources. float32 (a correctness path: exact-float32 training) needs twice the bytes per
# tile, so it starts small. tests/kernels/test_triton_compile.py compiles the first 16-bit entries
# for sm_90 and fails if any spills registers: dk/dv at head dim 128 takes (32, 128, 8 warps), 3%
# slower in the sweep than (32, 64, 4 warps), which spilled 120 bytes a thread under Triton 3.7.
# The float32 forward takes 8 warps: its exact dots run as FMAs and spilled 544 bytes a thread
# (hd 64) and 7 KB (hd 128) with 4; 0 and 752 with 8.
GPU_CONFIGS = {
    ("fwd", 64, 2): [_cfg(128, 64, 8, 3), _cfg(128, 64, 4, 3), _cfg(64, 64, 4, 2), _cfg(32, 32, 4, 1)],
    ("fwd", 128, 2): [_cfg(64, 64, 4, 3), _cfg(128, 64, 8, 3), _cfg(128, 32, 8, 2), _cfg(64, 32, 4, 1)],
    ("dkdv", 64, 2): [_cfg(32, 64, 4, 2), _cfg(16, 32, 4, 1)],
    ("dkdv", 128, 2): [_cfg(32, 128, 8, 2), _cfg(32, 64, 8, 2), _cfg(32, 32, 4, 1), _cfg(16, 32, 4, 1)],
    ("dq", 64, 2): [_cfg(64, 64, 4, 3), _cfg(64, 32, 4, 2), _cfg(32, 16, 4, 1)],
    ("dq", 128, 2): [_cfg(128, 32, 8, 2), _cfg(64, 32, 8, 2), _cfg(32, 32, 4, 1), _cfg(32, 16, 4, 1)],
    ("fwd", 64, 4): [_cfg(64, 32, 8, 2), _cfg(32, 32, 4, 1)],
    ("fwd", 128, 4): [_cfg(64, 32, 8, 2), _cfg(32, 32, 4, 1)],
    ("dkdv", 64, 4): [_cfg(32, 32, 4, 2), _cfg(16, 32, 4, 1)],
    ("dkdv", 128, 4): [_cfg(32, 32, 4, 2), _cfg(16, 16, 4, 1)],
    ("dq", 64, 4): [_cfg(32, 32, 4, 2), _cfg(16, 16, 4, 1)],
    ("dq", 128, 4): [_cfg(32, 32, 4, 2), _cfg(16, 16, 4, 1)],
}
INTERPRETER_CONFIG = _cfg(32, 32, 4, 1)
_working: dict[tuple, dict] = {}  # (kernel, head-dim class, bytes, device) -> the config that compiled


def unsupported_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    """Why this backend cannot take these tensors, or None."""
    head_dim = q.shape[-1]
    if not MIN_HEAD_DIM <= head_dim <= MAX_HEAD_DIM or head_dim % 8:
        return (f"head dim {head_dim} is not supported by the triton kernels (multiples of 8 in "
                f"[{MIN_HEAD_DIM}, {MAX_HEAD_DIM}])")
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        return "bfloat16 is not supported in Triton's CPU interpreter (use float32 or float16)"
    if q.device.type == "cuda" and q.shape[0] * q.shape[1] > MAX_GRID_Y:
        return f"batch * heads = {q.shape[0] * q.shape[1]} exceeds {MAX_GRID_Y} (a CUDA grid's second dimension)"
    return None


def _interpreting(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" or os.environ.get("TRITON_INTERPRET", "") == "1"


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _launch(kind: str, kernel, grid_of, args: tuple, meta: dict, t: torch.Tensor) -> None:
    """Runs `kernel` with the first configuration of its table that compiles for this GPU."""
    if _interpreting(t):
        kernel[grid_of(INTERPRETER_CONFIG)](*args, **meta, **INTERPRETER_CONFIG)
        return
    table = (kind, 64 if meta["HEAD_DIM"] <= 64 else 128, t.element_size())
    key = (*table, t.device)
    candidates = [_working[key]] if key in _working else GPU_CONFIGS[table]
    for i, cfg in enumerate(candidates):
        try:
            kernel[grid_of(cfg)](*args, **meta, **cfg)
        except OutOfResources:
            if i == len(candidates) - 1:
                raise
            continue
        _working[key] = cfg
        return


def attention_triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    with on_device(check_one_device("attention", q=q, k=k, v=v)):
        return _forward(q, k, v, causal, scale)


def attention_triton_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              out: torch.Tensor, lse: torch.Tensor, grad_lse: torch.Tensor | None,
                              causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = check_one_device("attention_backward", q=q, k=k, v=v, grad_out=grad_out, out=out, lse=lse,
                              grad_lse=grad_lse)
    with on_device(device):
        return _backward(grad_out, q, k, v, out, lse, grad_lse, causal, scale)


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    out = torch.empty((batch, heads, seq_q, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, seq_q), dtype=torch.float32, device=q.device)
    args = (q, k, v, out, lse, scale, *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            heads, heads // kv_heads, seq_q, seq_k)
    meta = {"CAUSAL": causal, "HEAD_DIM": head_dim, "BLOCK_D": triton.next_power_of_2(head_dim),
            "PRECISION": _precision(q.dtype)}
    grid_of = lambda cfg: (triton.cdiv(seq_q, cfg["BLOCK_M"]), batch * heads)
    _launch("fwd", attention_fwd_kernel, grid_of, args, meta, q)
    return out, lse


def _backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
              lse: torch.Tensor, grad_lse: torch.Tensor | None, causal: bool,
              scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    block_d = triton.next_power_of_2(head_dim)

    delta = torch.empty_like(lse)
    delta_block = 32 if _interpreting(q) else 64
    attention_bwd_delta_kernel[(triton.cdiv(seq_q, delta_block), batch * heads)](
        out, grad_out, grad_lse if grad_lse is not None else lse, delta, *_strides(out), *_strides(grad_out),
        heads, seq_q, HAS_DLSE=grad_lse is not None, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=delta_block)

    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    meta = {"CAUSAL": causal, "HEAD_DIM": head_dim, "BLOCK_D": block_d, "PRECISION": _precision(q.dtype)}
    _launch("dkdv", attention_bwd_dkdv_kernel, lambda cfg: (triton.cdiv(seq_k, cfg["BLOCK_N"]), batch * kv_heads),
            (q, k, v, grad_out, lse, delta, dk, dv, scale, *_strides(q), *_strides(k), *_strides(v),
             *_strides(grad_out), *_strides(dk), *_strides(dv), heads, kv_heads, heads // kv_heads, seq_q, seq_k),
            meta, q)
    _launch("dq", attention_bwd_dq_kernel, lambda cfg: (triton.cdiv(seq_q, cfg["BLOCK_M"]), batch * heads),
            (q, k, v, grad_out, lse, delta, dq, scale, *_strides(q), *_strides(k), *_strides(v),
             *_strides(grad_out), *_strides(dq), heads, heads // kv_heads, seq_q, seq_k),
            meta, q)
    return dq, dk, dv
