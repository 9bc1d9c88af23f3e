"""The torch op `fastllm::ggml_matmul(x, weight, qtype, out_features)`: y = x @ W^T with W in a
GGML block format (plain "q4_0"/"q8_0" rows or their "_x16" kernel layouts) and x quantized to
Q8_0 per 32-block as ggml does. One node for torch.compile (register_fake); the gradient with
respect to x is grad @ dequantize(W), so adapters can train on top of frozen GGML weights."""

from __future__ import annotations

import torch

from fastllm.kernels import dispatch
from fastllm.kernels.ggml.formats import check_matmul_args


@torch.library.custom_op("fastllm::ggml_matmul", mutates_args=())
def ggml_matmul_op(x: torch.Tensor, weight: torch.Tensor, qtype: str, out_features: int,
                   backend: str | None = None) -> torch.Tensor:
    check_matmul_args(x, weight, qtype, out_features)  # a direct torch.ops call skips ggml_matmul()
    impl = dispatch.implementation("ggml_matmul", x.device, backend)
    return impl(x, weight, qtype, out_features)


@ggml_matmul_op.register_fake
def _(x, weight, qtype, out_features, backend=None):
    check_matmul_args(x, weight, qtype, out_features)
    return x.new_empty(*x.shape[:-1], out_features)


@torch.library.custom_op("fastllm::ggml_dequantize_weight", mutates_args=())
def ggml_dequantize_weight_op(weight: torch.Tensor, qtype: str, out_features: int, in_features: int,
                              backend: str | None = None) -> torch.Tensor:
    from fastllm.kernels.ggml.api import dequantize_weight

    return dequantize_weight(weight, qtype, out_features, in_features, backend=backend)


@ggml_dequantize_weight_op.register_fake
def _(weight, qtype, out_features, in_features, backend=None):
    return weight.new_empty(out_features, in_features, dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    x, weight, qtype, out_features, backend = inputs
    ctx.save_for_backward(weight)
    ctx.qtype, ctx.out_features, ctx.in_features, ctx.backend = qtype, out_features, x.shape[-1], backend


def _backward(ctx, grad):
    (weight,) = ctx.saved_tensors
    w = torch.ops.fastllm.ggml_dequantize_weight(weight, ctx.qtype, ctx.out_features, ctx.in_features,
                                                 ctx.backend)  # (N, K), on the forward's forced backend
    return (grad.to(torch.float32) @ w).to(grad.dtype), None, None, None, None


ggml_matmul_op.register_autograd(_backward, setup_context=_setup_context)


def ggml_matmul(x: torch.Tensor, weight: torch.Tensor, qtype: str, out_features: int, *,
                backend: str | None = None) -> torch.Tensor:
    """y (..., out_features) = x (..., K) @ W^T, W given as GGML block bytes (see formats.py).

    x is quantized to Q8_0 per 32 values as ggml does, with an fp16 scale: a block of x beyond
    127 * 65504 (~8.3e6) in magnitude overflows it and its outputs become inf/NaN, and a NaN or
    inf in x makes the outputs it reaches NaN. `backend` ("cpp" | "ref") forces an
    implementation, like FASTLLM_BACKEND."""
    check_matmul_args(x, weight, qtype, out_features)
    if _plain_eager_call(x, weight):
        # Same function the op body runs, minus ~20 us of custom-op dispatch: a batch-1 GEMV
        # on a 4096 x 4096 Q4_0 matrix takes ~300 us, so the op overhead alone would be 7%.
        return dispatch.implementation("ggml_matmul", x.device, backend)(x, weight, qtype, out_features)
    return torch.ops.fastllm.ggml_matmul(x, weight, qtype, out_features, backend)


def _plain_eager_call(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when nothing would observe the op node: no compile/trace, no autograd, no dispatch
    mode (FakeTensorMode, FlopCounterMode, ...), and ordinary tensors."""
    if type(x) is not torch.Tensor or type(weight) is not torch.Tensor or torch.compiler.is_compiling():
        return False
    if x.requires_grad and torch.is_grad_enabled():
        return False
    return _current_dispatch_mode() is None


def _current_dispatch_mode():
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:  # a future torch without it: always take the op path
        return object()
    return _get_current_dispatch_mode()
