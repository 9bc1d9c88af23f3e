"""Loads the native extensions and says clearly what is missing and how to build it.

`fastllm._C` (CPU kernels) is always part of a build; `fastllm._C_cuda` exists only when the
package was built with a CUDA compiler. Neither is imported until a kernel needs it.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

from fastllm.utils.errors import BackendUnavailableError, ExtensionMissingError

BUILD_HINT = "rebuild with `make build` (or `pip install .` from the source tree)"
CUDA_BUILD_HINT = ("rebuild on a machine with the CUDA toolkit: `FASTLLM_CUDA=on pip install .` "
                   "(or `make build FASTLLM_CUDA=on`)")


@functools.cache
def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"fastllm.{name}"), None
    except ImportError as exc:
        return None, str(exc)


def has_cpu_ext() -> bool:
    return _cpu_module() is not None


def has_cuda_ext() -> bool:
    return _load("_C_cuda")[0] is not None


def cpu_ext_error() -> str | None:
    return _load("_C")[1]


def cuda_ext_error() -> str | None:
    return _load("_C_cuda")[1]


@functools.cache
def _cpu_module() -> ModuleType | None:
    module, _ = _load("_C")
    if module is not None:
        forced = os.environ.get("FASTLLM_CPU_ISA", "").strip()
        if forced:
            _apply_forced_isa(module, forced)
    return module


def _apply_forced_isa(module: ModuleType, forced: str) -> None:
    try:
        module.core.set_active_isa(forced)
    except ValueError as exc:
        raise BackendUnavailableError(f"FASTLLM_CPU_ISA={forced}: {exc}") from None


def cpu() -> ModuleType:
    """fastllm._C, or an error saying how to build it."""
    module = _cpu_module()
    if module is None:
        raise ExtensionMissingError(
            f"fastllm._C (the C++ CPU extension) is not available: {cpu_ext_error()}; {BUILD_HINT}")
    return module


def cuda() -> ModuleType:
    """fastllm._C_cuda, or an error saying how to build it."""
    module, error = _load("_C_cuda")
    if module is None:
        raise ExtensionMissingError(
            f"fastllm._C_cuda (the CUDA extension) is not available: {error}; {CUDA_BUILD_HINT}")
    return module


def num_threads() -> int:
    """Threads native CPU kernels use: torch's setting, so one knob governs both."""
    import torch

    return max(1, torch.get_num_threads())
