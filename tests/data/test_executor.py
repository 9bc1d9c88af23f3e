"""The local executor: results in task order, one process pool for every map of a run (a spawned
worker costs an interpreter start-up), a failing task's error raised, the pool shut by close()."""

import os

import pytest

from fastllm.data.executor import LocalExecutor


def worker_pid(task: dict) -> tuple[int, int]:
    return task["i"], os.getpid()


def fail_on_three(task: dict) -> int:
    if task["i"] == 3:
        raise ValueError("task 3 failed")
    return task["i"]


def test_maps_share_one_pool_and_keep_task_order():
    executor = LocalExecutor(2)
    try:
        done = []
        first = executor.map(worker_pid, [{"i": i} for i in range(6)], lambda j, r: done.append(j))
        second = executor.map(worker_pid, [{"i": i} for i in range(6)])
    finally:
        executor.close()
    assert [i for i, _ in first] == list(range(6)) and sorted(done) == list(range(6))
    pids = {pid for _, pid in first + second}
    assert os.getpid() not in pids and len(pids) <= 2


def test_a_failing_task_raises_and_close_ends_the_pool():
    executor = LocalExecutor(2)
    try:
        with pytest.raises(ValueError, match="task 3 failed"):
            executor.map(fail_on_three, [{"i": i} for i in range(6)])
        assert executor.map(fail_on_three, [{"i": 0}, {"i": 1}]) == [0, 1]
    finally:
        executor.close()
    assert executor._pool is None


def test_one_worker_runs_in_process():
    assert LocalExecutor(1).map(worker_pid, [{"i": 0}, {"i": 1}]) == [(0, os.getpid()), (1, os.getpid())]
