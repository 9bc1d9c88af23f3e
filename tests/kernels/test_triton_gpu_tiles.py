"""The Triton attention kernels with the tile shapes a GPU launch uses, run in the interpreter.

The other interpreter tests launch every kernel with one small square tile (INTERPRETER_CONFIG).
On a GPU the launcher takes GPU_CONFIGS instead: rectangular tiles (BLOCK_M != BLOCK_N), a
different shape per kernel (forward, dK/dV, dQ) and fallbacks when shared memory runs out. The
block bookkeeping (which key blocks are fully visible under the causal mask, where the masked
tail starts, rows past the end) depends on those shapes, so each configuration of the table is
run here on lengths that are not multiples of its tiles. num_warps and num_stages do not change
the interpreter's result; they are checked at compile time (test_triton_compile.py).
"""

import importlib

import pytest
import torch
from test_attention_backends import check_backend

triton_launch = importlib.import_module("fastllm.kernels.attention.triton")

DTYPE_OF_BYTES = {2: torch.float16, 4: torch.float32}
# (B, H, Hkv, T, S) per head dim: causal prefill past two 128-row tiles, decoding continuation
# (T < S, bottom-right mask), and a non-causal case with more queries than keys.
CASES = [((1, 2, 1, 203, 203), True), ((1, 2, 2, 70, 261), True), ((1, 2, 1, 131, 75), False)]


def _table_rows():
    """(head dim, element bytes, candidate index) for every configuration the table can launch."""
    rows = set()
    for (_, head_dim, element_bytes), configs in triton_launch.GPU_CONFIGS.items():
        rows.update((head_dim, element_bytes, i) for i in range(len(configs)))
    return sorted(rows)


@pytest.fixture
def gpu_table_in_interpreter(monkeypatch):
    """Routes launches through the GPU table (the interpreter still runs them), pinned to one
    candidate per kernel kind; returns the function that pins it, which returns the list of
    (kind, head-dim class, configuration) actually launched."""
    monkeypatch.setattr(triton_launch, "_interpreting", lambda t: False)
    monkeypatch.setattr(triton_launch, "_working", {})
    full_table = dict(triton_launch.GPU_CONFIGS)
    launched = []

    def pin(index: int) -> list:
        pinned = {key: [configs[min(index, len(configs) - 1)]] for key, configs in full_table.items()}
        monkeypatch.setattr(triton_launch, "GPU_CONFIGS", pinned)
        return launched

    real_launch = triton_launch._launch

    def recording_launch(kind, kernel, grid_of, args, meta, t):
        triton_launch._working.clear()  # each call consults the pinned table
        real_launch(kind, kernel, grid_of, args, meta, t)
        ((table_key, config),) = triton_launch._working.items()
        launched.append((kind, table_key[1], config))

    monkeypatch.setattr(triton_launch, "_launch", recording_launch)
    return pin


@pytest.mark.parametrize("head_dim, element_bytes, index", _table_rows())
def test_gpu_tile_configuration_in_the_interpreter(seeded, gpu_table_in_interpreter, head_dim, element_bytes,
                                                   index):
    launched = gpu_table_in_interpreter(index)
    for (batch, heads, kv_heads, seq_q, seq_k), causal in CASES:
        check_backend("triton", (batch, heads, kv_heads, seq_q, seq_k, head_dim), DTYPE_OF_BYTES[element_bytes],
                      causal)
    expected = {(kind, dim, str(configs[0])) for (kind, dim, size), configs in triton_launch.GPU_CONFIGS.items()
                if dim == head_dim and size == element_bytes}
    assert {(kind, dim, str(config)) for kind, dim, config in launched} == expected
