"""GGML Q4_0 / Q8_0: byte-exact quantization, int4/int8 CPU matmul, GGMLLinear.

    blocks = quantize(w, "q4_0")                    # uint8 (N, K / 32 * 18), gguf's bytes
    w_hat = dequantize(blocks, "q4_0", w.shape)
    y = ggml_matmul(x, blocks, "q4_0", N)           # x quantized to Q8_0 per 32-block, like ggml
    layer = GGMLLinear.from_linear(linear, "q4_0")  # repacked for the kernels; .ggml_bytes() exact

Backends: cpp (csrc/cpu/ggml_*.cpp, AVX-512 VNNI / AVX2 / generic) and ref (ref.py, pure torch).
"""

from fastllm.kernels import dispatch
from fastllm.kernels.ggml.api import dequantize, dequantize_weight, quantize, repack, unpack
from fastllm.kernels.ggml.formats import QTYPES, GGMLError
from fastllm.kernels.ggml.linear import GGMLLinear
from fastllm.kernels.ggml.op import ggml_matmul

_IMPLEMENTATIONS = {
    "ggml_matmul": ("ggml_matmul_ref", "ggml_matmul_cpp"),
    "ggml_quantize": ("quantize", "quantize_cpp"),
    "ggml_dequantize": ("dequantize", "dequantize_cpp"),
    "ggml_repack": ("repack", "repack_cpp"),
    "ggml_unpack": ("unpack", "unpack_cpp"),
}
for _op, (_ref, _cpp) in _IMPLEMENTATIONS.items():
    dispatch.register(_op, "ref", f"fastllm.kernels.ggml.ref:{_ref}")
    dispatch.register(_op, "cpp", f"fastllm.kernels.ggml.cpp:{_cpp}")

__all__ = ["QTYPES", "GGMLError", "GGMLLinear", "dequantize", "dequantize_weight", "ggml_matmul",
           "quantize", "repack", "unpack"]
