"""The Triton kernels compile for a GPU (sm_90) even where none is present, with the tile
configurations the launchers try first, and those fit an H100's shared memory: the Triton
counterpart of `make cuda-check`. The interpreter tests cannot catch compiler-only errors.
(About 20 s; `python tests/kernels/triton_compile.py 80` checks sm_80 by hand.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

H100_SHARED_MEMORY = 227 * 1024  # bytes per block


def _compile(arch: int) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_compile.py")
    result = subprocess.run([sys.executable, str(script), str(arch)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_kernels_compile_for_sm90_and_fit_shared_memory():
    kernels = _compile(90)
    names = {k["kernel"] for k in kernels}
    assert {"_rope_kernel", "attention_fwd_kernel", "attention_bwd_dkdv_kernel", "attention_bwd_dq_kernel",
            "attention_bwd_delta_kernel"} <= names
    for kernel in kernels:
        assert kernel["shared"] <= H100_SHARED_MEMORY, kernel
