"""What the benchmarks share: the machine they ran on, and median timing of interleaved calls.

The benchmarks run as scripts (`.venv/bin/python bench/bench_<thing>.py`), which puts this
directory on sys.path, so they import it as `_common`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line for a results table: CPU model, logical CPUs, architecture."""
    return f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.machine()}"


def time_cpu(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes (wall clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_gpu(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes on the current CUDA stream (events, so no host sync inside)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def median_seconds(fn: Callable[[], object], repeats: int, timer=time_cpu) -> float:
    """Median of `repeats` back-to-back timed calls of `fn`."""
    return statistics.median(timer(fn) for _ in range(repeats))


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int, timer=time_cpu) -> dict[str, float]:
    """Median seconds per call of each candidate, timed round-robin (one call of each per round) so
    that drift in the machine's speed hits all of them alike. Two untimed warm-up calls each first
    (on a GPU they also compile the kernels)."""
    for fn in candidates.values():
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            times[name].append(timer(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}
