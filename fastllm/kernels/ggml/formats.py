"""GGML block formats and the argument checks every backend shares.

Plain (GGUF) types: "q4_0" (18-byte blocks) and "q8_0" (34-byte blocks) of 32 weights, stored as
uint8 tensors of shape (..., K / 32 * type_size), one row of blocks per row of weights.
Kernel types: "q4_0_x16" and "q8_0_x16", the same bytes repacked into tiles of 16 interleaved
rows (csrc/common/quant_blocks.h), uint8 of shape (ceil(N / 16), tile_bytes(K)). A repack is a
byte permutation, so the GGUF bytes are always recoverable (unpack).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch

from fastllm.utils.errors import KernelInputError

BLOCK = 32
TILE_ROWS = 16


class GGMLError(KernelInputError):
    """A GGML kernel got an argument it cannot use (dtype, shape, layout, values)."""


@dataclass(frozen=True)
class QType:
    name: str          # "q4_0", "q8_0", "q4_0_x16", "q8_0_x16"
    base: str          # the GGUF type: "q4_0" or "q8_0"
    type_size: int     # bytes per 32-weight block
    offset: int        # unsigned offset of the stored quants (q4_0: 8; q8_0 kernel layout: 128)
    x16: bool          # repacked into 16-row tiles

    @property
    def tile_quant_bytes(self) -> int:
        return 16 * (self.type_size - 2)


QTYPES = {
    "q4_0": QType("q4_0", "q4_0", 18, 8, False),
    "q8_0": QType("q8_0", "q8_0", 34, 128, False),
    "q4_0_x16": QType("q4_0_x16", "q4_0", 18, 8, True),
    "q8_0_x16": QType("q8_0_x16", "q8_0", 34, 128, True),
}
PLAIN_TYPES = ("q4_0", "q8_0")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def qtype_of(name: str, *, plain_only: bool = False) -> QType:
    allowed = PLAIN_TYPES if plain_only else tuple(QTYPES)
    if name not in allowed:
        raise GGMLError(f"qtype: unknown GGML type {name!r}; expected one of {', '.join(allowed)}")
    return QTYPES[name]


def x16_name(qtype: str) -> str:
    """The kernel layout of a plain type ("q4_0" -> "q4_0_x16")."""
    return qtype_of(qtype, plain_only=True).name + "_x16"


def tile_bytes(qtype: QType, k: int) -> int:
    nb = k // BLOCK
    scale_bytes = -(-nb * TILE_ROWS * 2 // 64) * 64
    return scale_bytes + nb * qtype.tile_quant_bytes


def weight_shape(qtype: QType, n: int, k: int) -> tuple[int, int]:
    """The uint8 shape of an N x K weight matrix in `qtype`."""
    if qtype.x16:
        return (-(-n // TILE_ROWS), tile_bytes(qtype, k))
    return (n, k // BLOCK * qtype.type_size)


def check_dims(name: str, dims, *, positive: bool = False) -> tuple[int, ...]:
    """`dims` as a tuple of ints, each >= 0 (> 0 with positive=True); floats and bools refused."""
    try:
        out = tuple(operator.index(d) for d in dims)
    except TypeError:
        out = None
    if out is None or any(isinstance(d, bool) for d in dims) or any(d < (1 if positive else 0) for d in out):
        kind = "positive" if positive else "non-negative"
        raise GGMLError(f"{name}: expected {kind} ints, got {', '.join(map(repr, dims))}")
    return out


def check_row_length(name: str, k: int) -> None:
    if k <= 0 or k % BLOCK:
        raise GGMLError(f"{name}: last dimension {k} is not a positive multiple of {BLOCK} (the GGML block size)")


def check_floats(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise GGMLError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise GGMLError(f"{name}: dtype {x.dtype} is not supported; expected float32, float16 or bfloat16")
    if x.dim() == 0:
        raise GGMLError(f"{name}: expected at least one dimension, got a scalar")
    if not x.is_contiguous():
        raise GGMLError(f"{name}: tensor of shape {tuple(x.shape)} is not contiguous; call .contiguous() first")


def check_bytes(name: str, blocks: torch.Tensor) -> None:
    if not isinstance(blocks, torch.Tensor):
        raise GGMLError(f"{name}: expected a torch.Tensor, got {type(blocks).__name__}")
    if blocks.dtype != torch.uint8:
        raise GGMLError(f"{name}: dtype {blocks.dtype} is not supported; expected torch.uint8 block bytes")
    if not blocks.is_contiguous():
        raise GGMLError(f"{name}: tensor of shape {tuple(blocks.shape)} is not contiguous; call .contiguous() first")


def check_finite(name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise GGMLError(f"{name}: {bad} value(s) are NaN or inf; GGML quantization needs finite weights")


def check_matmul_args(x: torch.Tensor, weight: torch.Tensor, qtype: str, out_features: int) -> QType:
    """Validates ggml_matmul's arguments; returns the weight's QType."""
    qt = qtype_of(qtype)
    check_floats("x", x)
    check_bytes("weight", weight)
    check_row_length("x", x.shape[-1])
    check_dims("out_features", (out_features,), positive=True)
    expected = weight_shape(qt, out_features, x.shape[-1])
    if tuple(weight.shape) != expected:
        raise GGMLError(f"weight: shape {tuple(weight.shape)} does not match {qtype} for out_features="
                        f"{out_features} and in_features={x.shape[-1]}; expected {expected}")
    if x.device != weight.device:
        raise GGMLError(f"x is on {x.device} but weight is on {weight.device}; put them on one device")
    return qt
