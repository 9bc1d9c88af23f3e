"""Shared fixtures: CPU instruction-set paths, forced backends, GPU markers.

Triton kernels are tested on the CPU through Triton's interpreter, which must be switched on
before any @triton.jit function is defined, hence the environment variable set at import.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fastllm import _ext  # noqa: E402


def _supported_isas() -> list[str]:
    if not _ext.has_cpu_ext():
        return []
    return list(_ext.cpu().core.supported_isas())


def pytest_generate_tests(metafunc):
    # Every test that asks for `cpu_isa` runs once per CPU path this machine supports.
    if "cpu_isa" in metafunc.fixturenames:
        metafunc.parametrize("cpu_isa", _supported_isas(), indirect=True)


@pytest.fixture
def cpu_isa(request):
    """Forces the native CPU path for the test (generic, avx2, avx512), restoring it after."""
    from fastllm.kernels import forced_cpu_isa

    with forced_cpu_isa(request.param):
        yield request.param


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs an NVIDIA GPU; none is visible to torch here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _no_backend_override(monkeypatch):
    """Tests start from automatic dispatch; a test forces a backend explicitly when it needs one."""
    monkeypatch.delenv("FASTLLM_BACKEND", raising=False)
    yield


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)
