"""User-facing errors. The CLI prints `error: <message>` for these and exits non-zero; anything
else is a bug and keeps its traceback."""

from __future__ import annotations


class FastLLMError(Exception):
    """A failure the user can act on. The message is one line: where, what is wrong, what to do."""


class ConfigError(FastLLMError, ValueError):
    """A configuration file or flag is invalid (unknown key, wrong type, bad value)."""


class InputFormatError(FastLLMError, ValueError):
    """An input file is malformed: truncated, corrupt, wrong type or empty."""


class KernelInputError(FastLLMError, ValueError):
    """A kernel was called with tensors it cannot take (shape, dtype, device, strides, values)."""


class BackendUnavailableError(FastLLMError, RuntimeError):
    """A kernel backend was forced (FASTLLM_BACKEND, backend=, FASTLLM_CPU_ISA) but cannot run."""


class ExtensionMissingError(FastLLMError, ImportError):
    """The native extension was not built or failed to load."""


def where(path, detail: str | None = None) -> str:
    """Formats `path` (and an optional location inside it) for the start of an error message."""
    return f"{path}" if detail is None else f"{path} ({detail})"
