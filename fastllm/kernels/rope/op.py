"""fastllm::rope and fastllm::rope_ (in place): torch ops over the dispatcher.

Every backend implements one calling convention,

    impl(q, k, cos, sin, positions, offset, inverse, inplace) -> (q_rot, k_rot)

with arguments already validated by the op bodies below (so a direct torch.ops.fastllm.rope
call is as safe as `rope()`, and the data-dependent position check runs on real tensors, never
while torch.compile traces): q (B, T, Hq, D), k (B, T, Hk, D) with a contiguous last dim,
cos/sin float32 (P, D/2) contiguous on q's device, positions None or int64 (B, T) (a (T,) tensor
is expanded with a zero batch stride), inverse selecting the transpose rotation. Out of place it
returns new contiguous tensors; in place it writes q and k and returns them.

The functional op is differentiable: the gradient of a rotation is the inverse rotation, so
backward is the same op with `inverse` flipped (and is itself differentiable). The in-place op
is for inference (KV-cache decoding) and refuses tensors that require grad.

`rope()` runs the op body itself, skipping the dispatcher, when that changes nothing (plain
tensors, no autograd, no tracing, no modes: see dispatch.direct_call_allowed); it bumps the
version counters of an in-place call's q and k as the dispatcher would.
"""

from __future__ import annotations

import torch
from torch.autograd.graph import increment_version

from fastllm.kernels import checks, dispatch
from fastllm.kernels.checks import fail

OP = "rope"


@torch.library.custom_op("fastllm::rope", mutates_args=())
def rope_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            positions: torch.Tensor | None, offset: int, inverse: bool,
            backend: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    return _rope_body(q, k, cos, sin, positions, offset, inverse, backend)


def _rope_body(q, k, cos, sin, positions, offset, inverse, backend):
    _validate(q, k, cos, sin, positions, offset)
    impl = dispatch.implementation(OP, q.device, backend)
    return impl(q, k, cos, sin, _batched(positions, q.shape[0]), offset, inverse, False)


def _batched(positions: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """int64 (B, T) positions for the kernels; a (T,) row is broadcast with a zero batch stride."""
    if positions is None:
        return None
    positions = positions.long()
    return positions.unsqueeze(0).expand(batch, -1) if positions.dim() == 1 else positions


@rope_op.register_fake
def _rope_fake(q, k, cos, sin, positions, offset, inverse, backend):
    _validate(q, k, cos, sin, positions, offset, values=False)
    return q.new_empty(q.shape), k.new_empty(k.shape)


def _rope_setup_context(ctx, inputs, output):
    q, k, cos, sin, positions, offset, inverse, backend = inputs
    ctx.save_for_backward(cos, sin, positions)
    ctx.offset, ctx.inverse, ctx.backend = offset, inverse, backend
    ctx.like = [(t.shape, t.dtype, t.device) for t in (q, k)]


def _as_gradient(grad: torch.Tensor | None, like) -> torch.Tensor:
    if grad is None:  # only one of the outputs was used
        shape, dtype, device = like
        return torch.zeros(shape, dtype=dtype, device=device)
    return grad if grad.stride(-1) == 1 else grad.contiguous()


def _rope_backward(ctx, grad_q, grad_k):
    cos, sin, positions = ctx.saved_tensors
    grad_q, grad_k = (_as_gradient(g, like) for g, like in zip((grad_q, grad_k), ctx.like))
    dq, dk = torch.ops.fastllm.rope(grad_q, grad_k, cos, sin, positions, ctx.offset,
                                    not ctx.inverse, ctx.backend)
    return dq, dk, None, None, None, None, None, None


rope_op.register_autograd(_rope_backward, setup_context=_rope_setup_context)


@torch.library.custom_op("fastllm::rope_", mutates_args=("q", "k"))
def rope_inplace_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    positions: torch.Tensor | None, offset: int, inverse: bool,
                    backend: str | None) -> None:
    _rope_inplace_body(q, k, cos, sin, positions, offset, inverse, backend)


def _rope_inplace_body(q, k, cos, sin, positions, offset, inverse, backend) -> None:
    _validate(q, k, cos, sin, positions, offset)
    for name, t in (("q", q), ("k", k)):
        if torch._debug_has_internal_overlap(t) == 1:
            fail(OP, f"{name} has overlapping elements (an expanded view); inplace=True needs distinct ones")
    if q.numel() and q.data_ptr() == k.data_ptr():
        fail(OP, "q and k are the same memory; inplace=True would rotate it twice (pass distinct tensors)")
    impl = dispatch.implementation(OP, q.device, backend)
    impl(q, k, cos, sin, _batched(positions, q.shape[0]), offset, inverse, True)


@rope_inplace_op.register_fake
def _rope_inplace_fake(q, k, cos, sin, positions, offset, inverse, backend):
    _validate(q, k, cos, sin, positions, offset, values=False)


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *,
         positions: torch.Tensor | None = None, offset: int = 0, inplace: bool = False,
         backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding of q (B, T, Hq, D) and k (B, T, Hk, D), HF half-rotation layout.

    cos, sin: float32 (max_positions, D // 2) from `rope_tables`. Token t of every sequence sits
    at position offset + t, or at positions[t] / positions[b, t] when `positions` (int64, (T,) or
    (B, T)) is given. Returns (q_rot, k_rot); with inplace=True q and k are overwritten and
    returned (not differentiable). `backend` forces cuda | triton | cpp | ref.
    """
    _check_types(q, k, cos, sin, positions, offset)
    direct = dispatch.direct_call_allowed(q, k, cos, sin, positions)
    if inplace:
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
            fail(OP, "inplace=True is not differentiable and q or k requires grad; use inplace=False")
        if direct:
            _rope_inplace_body(q, k, cos, sin, positions, offset, False, backend)
            increment_version((q, k))  # what the dispatcher does for a mutating op
        else:
            torch.ops.fastllm.rope_(q, k, cos, sin, positions, offset, False, backend)
        return q, k
    if direct:
        return _rope_body(q, k, cos, sin, positions, offset, False, backend)
    return torch.ops.fastllm.rope(q, k, cos, sin, positions, offset, False, backend)


def _check_types(q, k, cos, sin, positions, offset) -> None:
    """What the op schema would reject with a multi-line message; the op bodies check the rest."""
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor):
            fail(OP, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if positions is not None and not isinstance(positions, torch.Tensor):
        fail(OP, f"positions must be an int64 tensor of shape (T,) or (B, T), got {type(positions).__name__}")
    if not isinstance(offset, (int, torch.SymInt)) or isinstance(offset, bool):
        fail(OP, f"offset must be an int, got {offset!r}")


def _validate(q, k, cos, sin, positions, offset, values: bool = True) -> None:
    """Shapes, dtypes, devices, strides and the table range; `values=False` (fake kernels: while
    tracing, or for meta tensors) skips the one check that reads the positions."""
    checks.check_rank(OP, "q", q, "B, T, Hq, D")
    checks.check_rank(OP, "k", k, "B, T, Hk, D")
    checks.check_float(OP, "q", q)
    checks.check_same_dtype(OP, "k", k, "q", q)
    checks.check_same_device(OP, "k", k, "q", q)
    batch, seq_len, _, head_dim = q.shape
    if k.shape[0] != batch or k.shape[1] != seq_len or k.shape[3] != head_dim:
        fail(OP, f"k has shape {tuple(k.shape)} but q has {tuple(q.shape)}; B, T and D must match")
    if head_dim % 2:
        fail(OP, f"head dim D={head_dim} must be even")
    checks.check_last_dim_contiguous(OP, "q", q)
    checks.check_last_dim_contiguous(OP, "k", k)
    for name, table in (("cos", cos), ("sin", sin)):
        checks.check_rank(OP, name, table, "max_positions, D/2")
        if table.dtype != torch.float32:
            fail(OP, f"{name} has dtype {table.dtype}; the tables are float32 (see rope_tables)")
        checks.check_same_device(OP, name, table, "q", q)
        if table.shape[1] != head_dim // 2:
            fail(OP, f"{name} has {table.shape[1]} columns but q's head dim {head_dim} needs {head_dim // 2}")
        if not table.is_contiguous():
            fail(OP, f"{name} must be contiguous; call .contiguous()")
    if cos.shape != sin.shape:
        fail(OP, f"cos {tuple(cos.shape)} and sin {tuple(sin.shape)} must have the same shape")
    max_positions = cos.shape[0]
    if positions is None:
        if offset < 0 or offset + seq_len > max_positions:
            fail(OP, f"offset={offset} with T={seq_len} needs positions up to {offset + seq_len - 1} "
                     f"but the tables hold {max_positions}; build larger tables")
        return
    _validate_positions(positions, batch, seq_len, max_positions, q.device, values)


def _validate_positions(positions, batch, seq_len, max_positions, device, values) -> None:
    if not isinstance(positions, torch.Tensor) or positions.dtype not in (torch.int64, torch.int32):
        fail(OP, "positions must be an int64 tensor of shape (T,) or (B, T)")
    if positions.device != device:
        fail(OP, f"positions is on {positions.device} but q is on {device}")
    if tuple(positions.shape) not in ((seq_len,), (batch, seq_len)):
        fail(OP, f"positions has shape {tuple(positions.shape)}; expected ({seq_len},) or ({batch}, {seq_len})")
    if values and positions.numel():
        if positions.is_cuda and torch.cuda.is_current_stream_capturing():
            # A CUDA graph being captured cannot read values back: check them on the device
            # instead (a failure there is a device-side assert when the graph runs).
            in_range = (positions >= 0).all() & (positions < max_positions).all()
            torch._assert_async(in_range, f"{OP}: positions must lie in [0, {max_positions}) (the table size)")
            return
        low, high = torch.stack(torch.aminmax(positions)).tolist()  # one device sync, not two
        if low < 0 or high >= max_positions:
            fail(OP, f"positions must lie in [0, {max_positions}) (the table size), got [{low}, {high}]")
