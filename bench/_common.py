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


def gpu_calls_timer(calls: int) -> Callable[[Callable[[], object]], float]:
    """A timer for `interleaved`: seconds per call of `calls` back-to-back calls on the current
    CUDA stream, as a model's layers issue them (the host prepares call n+1 while the GPU runs
    call n). Host overhead counts only where it exceeds the kernel's time (a decode step); one
    call between two events would add the whole host path to the kernel, the GPU idle meanwhile."""
    import torch

    def timer(fn: Callable[[], object]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls

    return timer


def graphed(fn: Callable[[], object], calls: int) -> Callable[[], None]:
    """`calls` calls of `fn` captured in a CUDA graph; calling the result replays them (device
    time alone: no host work between kernels). Warmed up (Triton compiles) outside the capture."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return graph.replay


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
