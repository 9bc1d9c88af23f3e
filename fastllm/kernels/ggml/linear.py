"""GGMLLinear: an nn.Linear whose weight lives in a GGML block format (Q4_0 or Q8_0).

The weight is quantized with ggml's reference quantizer (or taken as GGUF bytes) and repacked
once, at load time, into the 16-row interleaved layout the CPU kernels stream fastest; the exact
GGUF bytes stay recoverable with `ggml_bytes()` (the repack is a byte permutation).
"""

from __future__ import annotations

import torch
from torch import nn

from fastllm.kernels.ggml.api import dequantize_weight, quantize, repack, unpack
from fastllm.kernels.ggml.formats import (
    GGMLError,
    check_bytes,
    check_dims,
    check_row_length,
    qtype_of,
    weight_shape,
    x16_name,
)
from fastllm.kernels.ggml.hugepages import empty_bytes
from fastllm.kernels.ggml.op import ggml_matmul


class GGMLLinear(nn.Module):
    """y = x @ W^T + b with W in `qtype` ("q4_0" | "q8_0"); x float32/bf16/fp16 of (..., in_features)."""

    def __init__(self, in_features: int, out_features: int, qtype: str = "q4_0", bias: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        qtype_of(qtype, plain_only=True)
        check_dims("in_features, out_features", (in_features, out_features), positive=True)
        check_row_length("in_features", in_features)
        self.in_features, self.out_features, self.qtype = in_features, out_features, qtype
        shape = weight_shape(qtype_of(x16_name(qtype)), out_features, in_features)
        on_cpu = device is None or torch.device(device).type == "cpu"
        packed = empty_bytes(shape).zero_() if on_cpu else torch.zeros(shape, dtype=torch.uint8, device=device)
        self.register_buffer("packed", packed)
        self.register_buffer("bias", torch.zeros(out_features, device=device) if bias else None)

    @property
    def kernel_qtype(self) -> str:
        return x16_name(self.qtype)

    @classmethod
    def from_linear(cls, linear: nn.Linear, qtype: str = "q4_0") -> GGMLLinear:
        """Quantizes `linear.weight` (ggml's reference rounding) and keeps its bias in fp32."""
        weight = linear.weight.detach()
        bias = None if linear.bias is None else linear.bias.detach()
        return cls.from_ggml_bytes(quantize(weight.contiguous(), qtype), qtype, linear.in_features,
                                   linear.out_features, bias=bias)

    @classmethod
    def from_ggml_bytes(cls, blocks: torch.Tensor, qtype: str, in_features: int, out_features: int,
                        bias: torch.Tensor | None = None) -> GGMLLinear:
        """From plain GGUF rows (out_features, in_features / 32 * type_size), e.g. read from a .gguf."""
        check_bytes("blocks", blocks)
        expected = weight_shape(qtype_of(qtype, plain_only=True), out_features, in_features)
        if tuple(blocks.shape) != expected:
            raise GGMLError(f"blocks: shape {tuple(blocks.shape)} does not hold a {out_features} x "
                            f"{in_features} {qtype} weight; expected {expected}")
        if bias is not None and tuple(bias.shape) != (out_features,):
            raise GGMLError(f"bias: shape {tuple(bias.shape)}; expected ({out_features},)")
        module = cls(in_features, out_features, qtype, bias=bias is not None, device=blocks.device)
        module.packed = repack(blocks, qtype)
        if bias is not None:
            module.bias = bias.to(torch.float32).clone()
        return module

    def ggml_bytes(self) -> torch.Tensor:
        """The exact GGUF block bytes of the weight: uint8 (out_features, in_features / 32 * type_size)."""
        return unpack(self.packed, self.qtype, self.out_features, self.in_features)

    def dequantized_weight(self) -> torch.Tensor:
        """The weight as the kernels see it: float32 (out_features, in_features)."""
        return dequantize_weight(self.packed, self.kernel_qtype, self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = ggml_matmul(x.contiguous(), self.packed, self.kernel_qtype, self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, qtype={self.qtype}, "
                f"bias={self.bias is not None}")
