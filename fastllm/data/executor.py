"""Where stage tasks run: a local process pool (default) or Ray (`executor: ray`, the optional
`fastllm[ray]` extra). A task is a module-level function over a JSON-like dict that writes its
outputs to files and returns a small JSON-like result, so both executors give identical results;
results come back in task order, and `on_done` sees each one as it finishes (progress bars)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from fastllm.utils.errors import FastLLMError

Task = dict[str, Any]


class LocalExecutor:
    """A process pool started at the first parallel map and kept for the later stages (each
    spawned worker costs ~0.4 s of interpreter start-up and imports), shut down by close()."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Task], Any], tasks: list[Task],
            on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                results[i] = fn(task)
                if on_done:
                    on_done(i, results[i])
            return results
        futures = {self._started_pool().submit(fn, task): i for i, task in enumerate(tasks)}
        try:
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done:
                    on_done(i, results[i])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return results

    def _started_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fresh interpreter per worker, never a fork of a process holding threads.
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise FastLLMError("executor: ray needs the Ray package; install it with "
                               "`pip install 'fastllm[ray]'`") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = max(1, workers)
            ray.init(**kwargs)

    def map(self, fn: Callable[[Task], Any], tasks: list[Task],
            on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
        remote = self.ray.remote(fn)
        refs = [remote.remote(task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                results[i] = self.ray.get(ref)
                if on_done:
                    on_done(i, results[i])
        return results

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(kind: str, workers: int, address: str | None = None) -> LocalExecutor | RayExecutor:
    if kind == "ray":
        return RayExecutor(workers, address)
    return LocalExecutor(workers)
