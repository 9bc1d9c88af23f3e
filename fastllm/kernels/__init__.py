"""Public kernel API. Every hot path in fastllm goes through here; see dispatch.py for how a
backend (cuda | triton | cpp | ref) is chosen per op and device."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

import torch

from fastllm import _ext
from fastllm.kernels import dispatch
from fastllm.utils.errors import BackendUnavailableError

# Op packages register their implementations with the dispatcher when imported.
_OP_PACKAGES: tuple[str, ...] = ("rope", "attention", "ggml")

for _package in _OP_PACKAGES:
    importlib.import_module(f"fastllm.kernels.{_package}")

# The public functions shadow their package names on purpose (fastllm.kernels.rope is the op).
from fastllm.kernels.attention import attention as attention  # noqa: E402
from fastllm.kernels.rope import rope as rope  # noqa: E402
from fastllm.kernels.rope import rope_tables as rope_tables  # noqa: E402


def cpu_isa() -> str:
    """The CPU instruction-set path native kernels use now: generic, avx2 or avx512."""
    return _ext.cpu().core.active_isa()


def supported_cpu_isas() -> list[str]:
    """Every CPU path this machine and build can run, generic first."""
    return list(_ext.cpu().core.supported_isas())


def set_cpu_isa(name: str) -> None:
    """Forces a CPU path (like FASTLLM_CPU_ISA); an error if this CPU lacks it."""
    try:
        _ext.cpu().core.set_active_isa(name)
    except ValueError as exc:
        raise BackendUnavailableError(f"set_cpu_isa({name!r}): {exc}") from None


@contextlib.contextmanager
def forced_cpu_isa(name: str) -> Iterator[None]:
    """Runs the body with the CPU path forced to `name`, then restores the previous one."""
    previous = cpu_isa()
    set_cpu_isa(name)
    try:
        yield
    finally:
        set_cpu_isa(previous)


def info() -> dict[str, Any]:
    """What this build can do: extensions, CPU path, threads, GPU, and the backend per op."""
    report: dict[str, Any] = {
        "cpu_extension": _ext.has_cpu_ext(),
        "cuda_extension": _ext.has_cuda_ext(),
        "threads": _ext.num_threads(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if not report["cpu_extension"]:
        report["cpu_extension_error"] = _ext.cpu_ext_error()
    else:
        core = _ext.cpu().core
        report["cpu_isa"] = core.active_isa()
        report["cpu_isa_best"] = core.best_isa()
        report["cpu_isas_supported"] = list(core.supported_isas())
        report["cpu_features"] = {k: v for k, v in core.cpu_features().items() if v}
    if not report["cuda_extension"]:
        report["cuda_extension_error"] = _ext.cuda_ext_error()
    elif torch.cuda.is_available():
        device = _ext.cuda().device
        report["cuda_devices"] = device.device_count()
        report["cuda_runtime"] = device.runtime_version()
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    report["triton"] = dispatch._triton_importable()
    report["ops"] = {op: _backend_summary(op) for op in dispatch.ops()}
    return report


def _backend_summary(op: str) -> dict[str, str]:
    summary = {"implementations": ",".join(dispatch.backends_of(op))}
    for device in ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]:
        try:
            summary[device] = dispatch.pick(op, device)
        except BackendUnavailableError as exc:
            summary[device] = f"unavailable ({exc})"
    return summary
