"""fastllm::attention and fastllm::attention_backward: torch ops over the dispatcher.

Two dispatcher ops, one convention per direction (arguments validated by the op bodies and fake
kernels below, so a direct torch.ops.fastllm call is as safe as `attention()`):

    "attention":           impl(q, k, v, causal, scale) -> (out, lse)
    "attention_backward":  impl(grad_out, q, k, v, out, lse, grad_lse, causal, scale) -> (dq, dk, dv)

q (B, H, T, D), k, v (B, Hkv, S, D) with contiguous last dims (other strides free), same dtype
and device; out (B, H, T, D) contiguous in q's dtype; lse (B, H, T) float32 contiguous; the
gradients contiguous in the shapes and dtypes of q, k, v. The
backward makes the forward's choice of backend again (same tensors, same rule), so a forced
backend stays forced.

fastllm::attention returns (out, lse) because the backward needs lse; `attention()` hands out
only `out`. The gradient through lse is supported too (grad_lse, usually None).
"""

from __future__ import annotations

import importlib

import torch

from fastllm.kernels import checks, dispatch
from fastllm.kernels.checks import fail

OP, BACKWARD_OP = "attention", "attention_backward"
# Backends whose kernels take only some shapes/dtypes say why not in `unsupported_reason`.
_LIMITED_BACKENDS = {"triton": "fastllm.kernels.attention.triton", "cuda": "fastllm.kernels.attention.cuda"}


def choose_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None) -> str:
    """The backend for this call: dispatch.pick, then a shape/dtype check. A forced backend that
    cannot take the call is an error; an automatic choice moves down cuda -> triton -> ref.

    Automatic choice on a GPU with both compiled backends: the CUDA module's split-KV kernel for
    decoding (T == 1), the Triton kernel for more queries (prefill, training): Triton's forward ran
    1.13-1.61x SDPA flash where the CUDA mma.sync one ran 0.78-0.82x (H200, bench/RESULTS.md). On
    Hopper, for the head dims where the CUDA wgmma forward outran Triton's
    (cuda.prefers_cuda_prefill: 128), prefill stays cuda. The backward is Triton's either way."""
    forced = bool(backend or dispatch.forced_backend(OP))
    name = dispatch.pick(OP, q.device, backend)
    if not forced and name == "cuda" and q.shape[2] > 1 \
            and not _cuda_module().prefers_cuda_prefill(q.device, q.shape[-1]) and _triton_takes(q, k, v):
        return "triton"
    reason = _unsupported(name, q, k, v)
    if reason is None:
        return name
    if forced:
        fail(OP, f"backend {name} cannot run this call: {reason}")
    if name == "cuda" and _triton_takes(q, k, v):
        return "triton"
    return "ref"


def _cuda_module():
    return importlib.import_module(_LIMITED_BACKENDS["cuda"])


def _triton_takes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return dispatch.unavailable_reason(OP, "triton", q.device) is None and _unsupported("triton", q, k, v) is None


def _unsupported(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    if name not in _LIMITED_BACKENDS:
        return None
    return importlib.import_module(_LIMITED_BACKENDS[name]).unsupported_reason(q, k, v)


@torch.library.custom_op("fastllm::attention", mutates_args=())
def attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
                 backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(q, k, v, causal, scale, backend)


def _forward(q, k, v, causal, scale, backend) -> tuple[torch.Tensor, torch.Tensor]:
    _validate(q, k, v, causal)
    impl = dispatch.implementation_of(OP, choose_backend(q, k, v, backend))
    return impl(q, k, v, causal, scale)


@attention_op.register_fake
def _attention_fake(q, k, v, causal, scale, backend):
    _validate(q, k, v, causal)
    batch, heads, seq_q, head_dim = q.shape
    return q.new_empty((batch, heads, seq_q, head_dim)), q.new_empty((batch, heads, seq_q), dtype=torch.float32)


@torch.library.custom_op("fastllm::attention_backward", mutates_args=())
def attention_backward_op(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          out: torch.Tensor, lse: torch.Tensor, grad_lse: torch.Tensor | None,
                          causal: bool, scale: float,
                          backend: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _validate_backward(grad_out, q, k, v, out, lse, grad_lse, causal)
    # The same choice as the forward's (same tensors, same rule), made here on real tensors: the
    # kernels' checks may read data pointers, which tensors being traced by torch.compile lack.
    impl = dispatch.implementation_of(BACKWARD_OP, choose_backend(q, k, v, backend))
    return impl(grad_out, q, k, v, out, lse, grad_lse, causal, scale)


@attention_backward_op.register_fake
def _attention_backward_fake(grad_out, q, k, v, out, lse, grad_lse, causal, scale, backend):
    _validate_backward(grad_out, q, k, v, out, lse, grad_lse, causal)
    return tuple(t.new_empty(t.shape) for t in (q, k, v))  # contiguous, whatever the input strides


def _setup_context(ctx, inputs, output):
    q, k, v, causal, scale, backend = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.causal, ctx.scale = causal, scale
    ctx.set_materialize_grads(False)  # lse is usually unused: keep its gradient None, not zeros
    ctx.backend = backend


def _backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    elif grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    if grad_lse is not None:
        grad_lse = grad_lse.contiguous()
    dq, dk, dv = torch.ops.fastllm.attention_backward(grad_out, q, k, v, out, lse, grad_lse,
                                                      ctx.causal, ctx.scale, ctx.backend)
    return dq, dk, dv, None, None, None


attention_op.register_autograd(_backward, setup_context=_setup_context)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
              scale: float | None = None, backend: str | None = None) -> torch.Tensor:
    """Softmax attention of q (B, H, T, D) over k, v (B, Hkv, S, D); Hkv divides H (GQA/MQA).

    causal with T != S aligns the queries to the last T key positions (KV-cache decoding and
    prefill, flash-attn's bottom-right alignment; torch SDPA's is_causal aligns top-left): query i
    sees keys j <= i + S - T. Causal T > S is an error: its first T - S queries would see no key
    (flash-attn gives such rows zeros by convention; here it is taken for a caller's mistake).
    scale defaults to D**-0.5. Returns (B, H, T, D) in q's dtype; differentiable. `backend`
    forces cuda | triton | ref.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            fail(OP, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if dispatch.direct_call_allowed(q, k, v):  # inference: skip the op's wrappers
        return _forward(q, k, v, causal, scale, backend)[0]
    out, _ = torch.ops.fastllm.attention(q, k, v, causal, scale, backend)
    return out


def _validate(q, k, v, causal) -> None:
    checks.check_rank(OP, "q", q, "B, H, T, D")
    checks.check_rank(OP, "k", k, "B, Hkv, S, D")
    checks.check_rank(OP, "v", v, "B, Hkv, S, D")
    checks.check_float(OP, "q", q)
    for name, t in (("k", k), ("v", v)):
        checks.check_same_dtype(OP, name, t, "q", q)
        checks.check_same_device(OP, name, t, "q", q)
        checks.check_last_dim_contiguous(OP, name, t)
    checks.check_last_dim_contiguous(OP, "q", q)
    batch, heads, seq_q, head_dim = q.shape
    if v.shape != k.shape:
        fail(OP, f"v has shape {tuple(v.shape)} but k has {tuple(k.shape)}; they must match")
    if k.shape[0] != batch or k.shape[3] != head_dim:
        fail(OP, f"k has shape {tuple(k.shape)} but q has {tuple(q.shape)}; B and D must match")
    kv_heads, seq_k = k.shape[1], k.shape[2]
    if kv_heads == 0 or heads % kv_heads:
        fail(OP, f"q has {heads} heads, not a multiple of k's {kv_heads} kv heads (GQA needs Hkv | H)")
    if seq_k == 0:
        fail(OP, "k and v have no positions (S=0)")
    if causal and seq_q > seq_k:
        fail(OP, f"causal attention with T={seq_q} queries needs at least as many keys, got S={seq_k} "
                 f"(queries are the last T of the S positions, so the first {seq_q - seq_k} would see no key)")


def _validate_backward(grad_out, q, k, v, out, lse, grad_lse, causal) -> None:
    """The forward's checks plus the saved tensors' layouts the backward kernels index directly."""
    _validate(q, k, v, causal)
    batch, heads, seq_q, _ = q.shape
    for name, t in (("grad_out", grad_out), ("out", out)):
        if t.shape != q.shape:
            fail(BACKWARD_OP, f"{name} has shape {tuple(t.shape)}; expected q's {tuple(q.shape)}")
        checks.check_same_dtype(BACKWARD_OP, name, t, "q", q)
        checks.check_same_device(BACKWARD_OP, name, t, "q", q)
        checks.check_last_dim_contiguous(BACKWARD_OP, name, t)
    for name, t in (("lse", lse), ("grad_lse", grad_lse)):
        if t is None:  # grad_lse, when the lse output was unused
            continue
        if tuple(t.shape) != (batch, heads, seq_q) or t.dtype != torch.float32 or not t.is_contiguous():
            fail(BACKWARD_OP, f"{name} must be a contiguous float32 ({batch}, {heads}, {seq_q}) tensor, got "
                              f"{t.dtype} {tuple(t.shape)}")
        checks.check_same_device(BACKWARD_OP, name, t, "q", q)
