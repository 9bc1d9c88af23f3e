"""Launchers over fastllm._C.ggml (csrc/cpu/ggml*.cpp). Arguments are validated by the public
functions in fastllm.kernels.ggml; these allocate outputs and pass raw pointers."""

from __future__ import annotations

import torch

from fastllm import _ext
from fastllm.kernels.ggml.formats import BLOCK, qtype_of, weight_shape
from fastllm.kernels.ggml.hugepages import empty_bytes


def _ggml():
    return _ext.cpu().ggml


def quantize_cpp(x: torch.Tensor, qtype: str) -> torch.Tensor:
    qt = qtype_of(qtype, plain_only=True)
    k = x.shape[-1]
    src = x.to(torch.float32).contiguous()
    rows = src.numel() // k
    out = torch.empty(*x.shape[:-1], k // BLOCK * qt.type_size, dtype=torch.uint8)
    _ggml().quantize(qtype, src.data_ptr(), out.data_ptr(), rows, k, _ext.num_threads())
    return out


def dequantize_cpp(blocks: torch.Tensor, qtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    qt = qtype_of(qtype, plain_only=True)
    k = shape[-1]
    out = torch.empty(shape, dtype=torch.float32)
    rows = blocks.numel() // (k // BLOCK * qt.type_size)
    _ggml().dequantize(qtype, blocks.data_ptr(), out.data_ptr(), rows, k, _ext.num_threads())
    return out


def repack_cpp(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    qt = qtype_of(qtype, plain_only=True)
    n, k = blocks.shape[0], blocks.shape[1] // qt.type_size * BLOCK
    out = empty_bytes(weight_shape(qtype_of(qtype + "_x16"), n, k))  # streamed by every GEMV
    _ggml().repack(qtype, blocks.data_ptr(), out.data_ptr(), n, k, _ext.num_threads())
    return out


def unpack_cpp(packed: torch.Tensor, qtype: str, n: int, k: int) -> torch.Tensor:
    out = torch.empty(weight_shape(qtype_of(qtype, plain_only=True), n, k), dtype=torch.uint8)
    _ggml().unpack(qtype, packed.data_ptr(), out.data_ptr(), n, k, _ext.num_threads())
    return out


def ggml_matmul_cpp(x: torch.Tensor, weight: torch.Tensor, qtype: str, out_features: int) -> torch.Tensor:
    qt = qtype_of(qtype)
    k = x.shape[-1]
    src = x if x.dtype == torch.float32 else x.to(torch.float32)
    m = src.numel() // k
    out = torch.empty(*x.shape[:-1], out_features, dtype=torch.float32)
    _ggml().matmul(qt.base, qt.x16, weight.data_ptr(), out_features, k, src.data_ptr(), m, k,
                   out.data_ptr(), out_features, _ext.num_threads())
    return out if x.dtype == torch.float32 else out.to(x.dtype)


def vec_dot_cpp(x_blocks: torch.Tensor, y_blocks: torch.Tensor, qtype: str) -> float:
    """ggml's vec_dot_{q4_0,q8_0}_q8_0 on one row: x in `qtype`, y in q8_0 (block bytes)."""
    k = x_blocks.numel() // qtype_of(qtype, plain_only=True).type_size * BLOCK
    return _ggml().vec_dot(qtype, k, x_blocks.data_ptr(), y_blocks.data_ptr())


def quantize_act_cpp(x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The matmul's activation blocks for one row of floats: (quants int8 (nb, 32), d fp32 (nb,),
    corr int32 (nb,))."""
    k = x.shape[-1]
    src = x.to(torch.float32).contiguous()
    raw = torch.empty(k // BLOCK, _ggml().act_block_bytes, dtype=torch.uint8)
    _ggml().quantize_act(src.data_ptr(), raw.data_ptr(), k, offset)
    d = raw[:, 0:4].contiguous().view(torch.float32).reshape(-1)
    corr = raw[:, 4:8].contiguous().view(torch.int32).reshape(-1)
    return raw[:, 8:].contiguous().view(torch.int8), d, corr
