"""The Triton kernels compile for a GPU (sm_90) even where none is present, with the tile
configurations the launchers try first; those fit an H100's shared memory, and the 16-bit
attention kernels keep everything in registers (no spills to local memory): the Triton
counterpart of `make cuda-check`. The interpreter tests cannot catch compiler-only errors.
(About 20 s; `python tests/kernels/triton_compile.py 80` checks sm_80 by hand.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

H100_SHARED_MEMORY = 227 * 1024  # bytes per block


@pytest.fixture(scope="module")
def sm90_kernels() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_compile.py")
    result = subprocess.run([sys.executable, str(script), "90"], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_kernels_compile_for_sm90_and_fit_shared_memory(sm90_kernels):
    names = {k["kernel"] for k in sm90_kernels}
    assert {"_rope_kernel", "attention_fwd_kernel", "attention_bwd_dkdv_kernel", "attention_bwd_dq_kernel",
            "attention_bwd_delta_kernel"} <= names
    for kernel in sm90_kernels:
        assert kernel["shared"] <= H100_SHARED_MEMORY, kernel


@pytest.mark.slow
def test_16bit_attention_kernels_do_not_spill_registers_on_sm90(sm90_kernels):
    """STACK > 0 in cuobjdump's resource usage means spilled registers: local-memory traffic in
    the inner loop. fp32 (exact-float32 training, a correctness path) is not held to this."""
    if any(k["stack"] is None for k in sm90_kernels):
        pytest.skip("Triton's bundled cuobjdump is missing, so register use cannot be read")
    checked = [k for k in sm90_kernels if k["kernel"].startswith("attention") and k["bytes"] == 2]
    configs = {(k["kernel"], k["head_dim"], k.get("causal")) for k in checked}
    assert len(configs) == 14  # fwd, dkdv, dq x hd 64, 128 x causal or not; delta x hd 64, 128
    spilled = [k for k in checked if k["stack"] > 0]
    assert not spilled, spilled
