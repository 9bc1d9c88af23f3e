"""Backend choice: automatic per device, forced by backend= or FASTLLM_BACKEND, never a silent
fallback when a forced backend cannot run."""

import pytest
import torch

from fastllm.kernels import dispatch
from fastllm.utils.errors import BackendUnavailableError

OP = "_test_double"


def double_ref(x):
    return x * 2


def double_cpp(x):
    return x + x


@pytest.fixture(autouse=True)
def registered_op():
    dispatch.register(OP, "ref", f"{__name__}:double_ref")
    dispatch.register(OP, "cpp", f"{__name__}:double_cpp")
    yield
    dispatch._registry.pop(OP, None)


def test_auto_prefers_cpp_on_cpu():
    assert dispatch.pick(OP, "cpu") == "cpp"
    assert dispatch.implementation(OP, "cpu") is double_cpp


def test_backend_argument_forces():
    assert dispatch.pick(OP, "cpu", backend="ref") == "ref"


def test_env_forces_every_op(monkeypatch):
    monkeypatch.setenv("FASTLLM_BACKEND", "ref")
    assert dispatch.pick(OP, "cpu") == "ref"


def test_env_forced_backend_that_cannot_run_names_the_variable(monkeypatch):
    monkeypatch.setenv("FASTLLM_BACKEND", "triton")
    with pytest.raises(BackendUnavailableError, match=f"{OP}: FASTLLM_BACKEND=triton cannot run"):
        dispatch.pick(OP, "cpu")


def test_env_per_op_list(monkeypatch):
    monkeypatch.setenv("FASTLLM_BACKEND", f"cpp,{OP}=ref")
    assert dispatch.pick(OP, "cpu") == "ref"
    monkeypatch.setenv("FASTLLM_BACKEND", "other_op=ref")
    assert dispatch.pick(OP, "cpu") == "cpp"


def test_env_unknown_backend_is_an_error(monkeypatch):
    monkeypatch.setenv("FASTLLM_BACKEND", "fast")
    with pytest.raises(BackendUnavailableError, match="unknown backend 'fast'"):
        dispatch.pick(OP, "cpu")


def test_forcing_a_missing_implementation_is_an_error():
    with pytest.raises(BackendUnavailableError, match="has no triton implementation"):
        dispatch.pick(OP, "cpu", backend="triton")


def test_forcing_cuda_on_cpu_tensors_is_an_error():
    dispatch.register(OP, "cuda", f"{__name__}:double_ref")
    with pytest.raises(BackendUnavailableError, match="needs CUDA tensors"):
        dispatch.pick(OP, "cpu", backend="cuda")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    dispatch.register(OP, "triton", f"{__name__}:double_ref")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        dispatch.pick(OP, "cpu", backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.pick(OP, "cpu", backend="triton") == "triton"
    # Never chosen automatically on the CPU, even when interpretable.
    assert dispatch.pick(OP, "cpu") == "cpp"


def test_unknown_op_lists_known_ones():
    with pytest.raises(ValueError, match="unknown kernel op 'nope'"):
        dispatch.pick("nope", "cpu")


def test_unknown_device_type_falls_to_ref():
    assert dispatch.pick(OP, torch.device("meta")) == "ref"
