"""Progress bars with rates. One switch (`set_quiet`, the CLI's --quiet, or FASTLLM_QUIET=1)
silences them all."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

_quiet = os.environ.get("FASTLLM_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def progress(iterable=None, *, desc: str, total: float | None = None, unit: str = "it",
             unit_scale: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar that writes to stderr, shows rates in `unit`/s and honours --quiet. Into a log
    file (not a terminal) it updates every 30 s, so logs stay readable."""
    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale,
                disable=_quiet, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def byte_progress(*, desc: str, total: float | None = None) -> tqdm:
    """A bar counting bytes, shown as kB/s, MB/s ..."""
    return progress(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1000)
