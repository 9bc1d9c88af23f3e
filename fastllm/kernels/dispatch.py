"""Chooses the backend that runs each kernel op: cuda | triton | cpp | ref.

Automatic choice, per op and device: on a GPU `cuda` (if fastllm._C_cuda is built and the op
has a CUDA kernel), else `triton`, else `ref`; on the CPU `cpp` (if fastllm._C is built and the
op has a C++ kernel), else `ref`. Triton on the CPU (its interpreter, TRITON_INTERPRET=1) is only
used when forced: it is a correctness tool, not a fast path.

Forcing: `backend=` on a call, or FASTLLM_BACKEND, either one name for every op (`ref`) or a
per-op list (`attention=ref,rope=cpp`, optionally with a default first: `cpp,attention=ref`).
Forcing a backend that cannot run raises BackendUnavailableError; it never silently falls back.

Implementations register as "module:function" strings and are imported on first use, so
importing fastllm never imports triton or loads an extension it does not need.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

import torch
from torch._C._functorch import is_functorch_wrapped_tensor

from fastllm import _ext
from fastllm.utils.errors import BackendUnavailableError

BACKENDS = ("cuda", "triton", "cpp", "ref")
_AUTO_ORDER = {"cuda": ("cuda", "triton", "ref"), "cpu": ("cpp", "ref")}

_registry: dict[str, dict[str, str]] = {}


def register(op: str, backend: str, target: str) -> None:
    """Declares that `target` ("package.module:function") implements `op` on `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} for op {op!r}; expected one of {BACKENDS}")
    _registry.setdefault(op, {})[backend] = target


def ops() -> list[str]:
    return sorted(_registry)


def backends_of(op: str) -> list[str]:
    """The backends `op` has an implementation for, in preference order."""
    return [b for b in BACKENDS if b in _impls_of(op)]


def _impls_of(op: str) -> dict[str, str]:
    if op not in _registry:
        raise ValueError(f"unknown kernel op {op!r}; known ops: {', '.join(ops()) or 'none'}")
    return _registry[op]


def _triton_importable() -> bool:
    try:
        importlib.import_module("triton")
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def unavailable_reason(op: str, backend: str, device: torch.device) -> str | None:
    """None when `backend` can run `op` on `device`; otherwise why not (one line)."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"
    if backend not in _impls_of(op):
        return f"op {op!r} has no {backend} implementation (it has: {', '.join(backends_of(op))})"
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend needs CUDA tensors, got device {device}"
        if not _ext.has_cuda_ext():
            return f"fastllm._C_cuda is not built ({_ext.cuda_ext_error()}); {_ext.CUDA_BUILD_HINT}"
    elif backend == "triton":
        if not _triton_importable():
            return "triton is not installed (pip install triton)"
        if device.type == "cpu" and not _interpreting():
            return "triton on CPU tensors needs the interpreter: set TRITON_INTERPRET=1"
        if device.type not in ("cuda", "cpu"):
            return f"triton cannot run on device {device}"
    elif backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend needs CPU tensors, got device {device}"
        if not _ext.has_cpu_ext():
            return f"fastllm._C is not built ({_ext.cpu_ext_error()}); {_ext.BUILD_HINT}"
    return None


@functools.cache
def _parse_forced(spec: str) -> tuple[str | None, dict[str, str]]:
    default, per_op = None, {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        if value:
            per_op[name.strip()] = value.strip()
        else:
            default = name
    for value in [default, *per_op.values()]:
        if value is not None and value not in BACKENDS:
            raise BackendUnavailableError(
                f"FASTLLM_BACKEND={spec!r}: unknown backend {value!r}; expected one of {', '.join(BACKENDS)}")
    return default, per_op


def forced_backend(op: str) -> str | None:
    """The backend FASTLLM_BACKEND forces for `op`, if any."""
    default, per_op = _parse_forced(os.environ.get("FASTLLM_BACKEND", ""))
    return per_op.get(op, default)


def pick(op: str, device: torch.device | str, backend: str | None = None) -> str:
    """The backend that will run `op` on `device`; `backend` (or FASTLLM_BACKEND) forces one."""
    if not isinstance(device, torch.device):
        device = torch.device(device)
    forced, source = (backend, "backend=") if backend else (forced_backend(op), "FASTLLM_BACKEND=")
    if forced:
        reason = unavailable_reason(op, forced, device)
        if reason:
            raise BackendUnavailableError(f"{op}: {source}{forced} cannot run: {reason}")
        return forced
    for candidate in _AUTO_ORDER.get(device.type, ("ref",)):
        if unavailable_reason(op, candidate, device) is None:
            return candidate
    raise BackendUnavailableError(
        f"{op}: no backend can run on device {device} (implementations: {', '.join(backends_of(op))})")


@functools.cache
def _resolve(target: str) -> Callable:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def implementation(op: str, device: torch.device | str, backend: str | None = None) -> Callable:
    """The function that runs `op` on `device` (see pick)."""
    return _resolve(_impls_of(op)[pick(op, device, backend)])


def implementation_of(op: str, backend: str) -> Callable:
    """The `backend` implementation of `op`, without availability checks (tests, benchmarks)."""
    return _resolve(_impls_of(op)[backend])


def direct_call_allowed(*tensors: torch.Tensor | None) -> bool:
    """Whether an op's public function may run its implementation directly, skipping
    torch.library's custom-op and autograd wrappers (15-30 us of host time a call, as much as a
    whole decoding-step kernel: bench/bench_call_overhead.py): only when the registered op would
    just run its body: eager mode, plain tensors of a real device, no gradient to record, no
    dispatch or function mode (FlopCounter, DebugMode, functionalization) and no functorch
    transform (vmap, grad). Both routes run the same checks and the same backend choice."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() \
            or torch._C._is_torch_function_mode_enabled():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) is not torch.Tensor or t.is_meta or (grad and t.requires_grad) \
                or is_functorch_wrapped_tensor(t):
            return False
    return True
