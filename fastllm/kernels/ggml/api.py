"""Public GGML functions: validate at the boundary, then run the dispatched backend (cpp on the
CPU when fastllm._C is built, else the pure-torch ref; FASTLLM_BACKEND or backend= force one)."""

from __future__ import annotations

import math

import torch

from fastllm.kernels import dispatch
from fastllm.kernels.ggml.formats import (
    BLOCK,
    GGMLError,
    check_bytes,
    check_dims,
    check_finite,
    check_floats,
    check_row_length,
    qtype_of,
    weight_shape,
)


def quantize(x: torch.Tensor, qtype: str, *, backend: str | None = None) -> torch.Tensor:
    """GGML blocks of `x` (..., K): uint8 (..., K / 32 * type_size), the exact bytes ggml and the
    gguf package write. qtype: "q4_0" or "q8_0"; K a multiple of 32; values finite."""
    qt = qtype_of(qtype, plain_only=True)
    check_floats("x", x)
    check_row_length("x", x.shape[-1])
    check_finite("x", x)
    out = dispatch.implementation("ggml_quantize", x.device, backend)(x, qtype)
    _check_scales_finite(out, qt.type_size, x)
    return out


def _check_scales_finite(blocks: torch.Tensor, type_size: int, x: torch.Tensor) -> None:
    scales = blocks.reshape(-1, type_size)[:, :2].contiguous().view(torch.int16)
    if bool(((scales & 0x7C00) == 0x7C00).any()):
        raise GGMLError(f"x: values up to {float(x.abs().max()):.4g} overflow the fp16 block scale; "
                        "scale the tensor down before quantizing")


def dequantize(blocks: torch.Tensor, qtype: str, shape, *, backend: str | None = None) -> torch.Tensor:
    """float32 tensor of `shape` from plain GGML block bytes (the inverse of quantize up to the
    quantization error)."""
    qt = qtype_of(qtype, plain_only=True)
    check_bytes("blocks", blocks)
    shape = check_dims("shape", shape)
    if not shape:
        raise GGMLError("shape: expected at least one dimension")
    check_row_length("shape", shape[-1])
    expected = (*shape[:-1], shape[-1] // BLOCK * qt.type_size)
    if blocks.numel() != math.prod(expected):
        raise GGMLError(f"blocks: {blocks.numel()} bytes do not hold a {qtype} tensor of shape {shape}; "
                        f"expected {math.prod(expected)} bytes, shaped {expected}")
    return dispatch.implementation("ggml_dequantize", blocks.device, backend)(blocks, qtype, shape)


def repack(blocks: torch.Tensor, qtype: str, *, backend: str | None = None) -> torch.Tensor:
    """Plain weight rows (N, K / 32 * type_size) -> the kernel layout qtype + "_x16"."""
    qt = qtype_of(qtype, plain_only=True)
    check_bytes("blocks", blocks)
    if blocks.dim() != 2 or blocks.shape[1] == 0 or blocks.shape[1] % qt.type_size:
        raise GGMLError(f"blocks: shape {tuple(blocks.shape)} is not (N, K / 32 * {qt.type_size}) {qtype} rows")
    return dispatch.implementation("ggml_repack", blocks.device, backend)(blocks, qtype)


def unpack(packed: torch.Tensor, qtype: str, out_features: int, in_features: int, *,
           backend: str | None = None) -> torch.Tensor:
    """Kernel layout qtype + "_x16" -> the exact plain GGUF rows (out_features, in_features / 32 * type_size)."""
    qt = qtype_of(qtype, plain_only=True)
    check_bytes("packed", packed)
    check_dims("out_features, in_features", (out_features, in_features), positive=True)
    check_row_length("in_features", in_features)
    expected = weight_shape(qtype_of(qtype + "_x16"), out_features, in_features)
    if tuple(packed.shape) != expected:
        raise GGMLError(f"packed: shape {tuple(packed.shape)} is not the {qt.name}_x16 layout of a "
                        f"{out_features} x {in_features} matrix {expected}")
    return dispatch.implementation("ggml_unpack", packed.device, backend)(packed, qtype, out_features, in_features)


def dequantize_weight(weight: torch.Tensor, qtype: str, out_features: int, in_features: int, *,
                      backend: str | None = None) -> torch.Tensor:
    """(out_features, in_features) float32 from a weight in any qtype (plain or _x16)."""
    qt = qtype_of(qtype)
    plain = unpack(weight, qt.base, out_features, in_features, backend=backend) if qt.x16 else weight
    return dequantize(plain, qt.base, (out_features, in_features), backend=backend)
