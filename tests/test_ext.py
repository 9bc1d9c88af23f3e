"""The native build: the extension loads, reports its CPU paths, and forcing works or fails clearly."""

import subprocess
import sys

import pytest

from fastllm import _ext, kernels
from fastllm.utils.errors import BackendUnavailableError


def test_cpu_extension_is_built():
    assert _ext.has_cpu_ext(), _ext.cpu_ext_error()
    assert "generic" in kernels.supported_cpu_isas()


def test_info_reports_the_build():
    report = kernels.info()
    assert report["cpu_extension"] is True
    assert report["cpu_isa"] in report["cpu_isas_supported"]
    assert report["cpu_isa_best"] == report["cpu_isas_supported"][-1]
    assert report["threads"] >= 1
    assert isinstance(report["ops"], dict)


def test_forced_isa_round_trips(cpu_isa):
    assert kernels.cpu_isa() == cpu_isa


def test_unknown_isa_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="unknown CPU ISA 'sse9'"):
        kernels.set_cpu_isa("sse9")


def test_isa_the_cpu_lacks_is_an_error_not_a_fallback():
    missing = [isa for isa in ("avx2", "avx512") if isa not in kernels.supported_cpu_isas()]
    if not missing:
        pytest.skip("this CPU supports every ISA path, so none can be refused")
    with pytest.raises(BackendUnavailableError, match="not supported on this machine"):
        kernels.set_cpu_isa(missing[0])


def _run_with_env(env_value: str) -> subprocess.CompletedProcess:
    code = "from fastllm import kernels; print(kernels.cpu_isa())"
    env = {"FASTLLM_CPU_ISA": env_value, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_env_override_forces_the_path():
    result = _run_with_env("generic")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "generic"


def test_env_override_with_bad_value_names_the_variable():
    result = _run_with_env("neon")
    assert result.returncode != 0
    assert "FASTLLM_CPU_ISA=neon" in result.stderr


@pytest.mark.parametrize("torch_team", [True, False])
def test_thread_pool_runs_every_task_once(torch_team):
    # On torch's OpenMP team (when libgomp is loaded) or on fastllm's own pool.
    core = _ext.cpu().core
    previous = core.use_torch_openmp(torch_team)
    try:
        for n_tasks in (1, 2, 3, 17, 1000):
            for n_threads in (1, 2, 4, 8):
                assert core.parallel_sum_test(n_tasks, n_threads) == n_tasks * (n_tasks + 1) // 2
    finally:
        core.use_torch_openmp(previous)


def test_thread_pool_survives_fork():
    code = (
        "import os, sys\n"
        "from fastllm import _ext\n"
        "core = _ext.cpu().core\n"
        "assert core.parallel_sum_test(100, 2) == 5050\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if core.parallel_sum_test(100, 2) == 5050 else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
