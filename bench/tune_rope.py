"""Tile sweep for the Triton RoPE kernel on a GPU, next to the CUDA kernel and a device-to-device
copy of the same bytes (the bandwidth ceiling): bf16, out of place, device time of 20 calls
replayed from a CUDA graph (no host overhead), GB/s counting q and k read and written once.

Sweeps fastllm/kernels/rope/triton.py's TILE_BYTES x MAX_TILE_HEADS x NUM_WARPS and prints the
fastest; about a minute (Triton compiles each configuration once).

    python bench/tune_rope.py [--repeats 10] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch
from _common import graphed, interleaved, time_gpu

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastllm.kernels import rope, rope_tables  # noqa: E402
from fastllm.kernels.rope import triton as tri  # noqa: E402

SHAPES = [(8, 1024, 32, 8, 128), (4, 4096, 32, 8, 128)]  # (B, T, Hq, Hk, D)
CALLS = 20


def _configured(tile_bytes, max_heads, warps, fn):
    def call():
        saved = tri.TILE_BYTES, tri.MAX_TILE_HEADS, tri.NUM_WARPS
        tri.TILE_BYTES, tri.MAX_TILE_HEADS, tri.NUM_WARPS = tile_bytes, max_heads, warps
        try:
            return fn()
        finally:
            tri.TILE_BYTES, tri.MAX_TILE_HEADS, tri.NUM_WARPS = saved
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the default configuration's neighbours only")
    args = parser.parse_args()
    print(f"== {torch.cuda.get_device_name(0)}; GB/s from CUDA-graph device time, {CALLS} calls per sample")
    sweep = list(itertools.product((4096, 8192, 16384), (4, 8, 16), (2, 4, 8)))
    if args.quick:
        sweep = [c for c in sweep if sum(a != b for a, b in zip(c, (8192, 8, 4))) <= 1]
    for shape in SHAPES:
        sweep_shape(shape, sweep, args.repeats)


def sweep_shape(shape, sweep, repeats: int) -> None:
    batch, seq, q_heads, k_heads, head_dim = shape
    q = torch.randn(batch, seq, q_heads, head_dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, seq, k_heads, head_dim, device="cuda", dtype=torch.bfloat16)
    cos, sin = rope_tables(seq + 16, head_dim, device="cuda")
    nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
    flat = torch.empty(q.numel() + k.numel(), device="cuda", dtype=torch.bfloat16)
    copy_to = torch.empty_like(flat)
    candidates = {
        "copy": lambda: copy_to.copy_(flat),
        "cuda": lambda: rope(q, k, cos, sin, offset=16, backend="cuda"),
        "cuda inplace": lambda: rope(q, k, cos, sin, offset=16, inplace=True, backend="cuda"),
    }
    for config in sweep:
        candidates[f"triton {config}"] = _configured(
            *config, lambda: rope(q, k, cos, sin, offset=16, backend="triton"))
    graphs = {name: graphed(fn, CALLS) for name, fn in candidates.items()}
    medians = interleaved(graphs, repeats, time_gpu)
    print(f"\n{shape} bf16, {nbytes / 1e6:.0f} MB moved; triton (tile bytes, max heads, warps)")
    for name, seconds in sorted(medians.items(), key=lambda item: item[1]):
        per_call = seconds / CALLS
        print(f"{name:>28} {per_call * 1e3:8.4f} ms {nbytes / per_call / 1e9:8.1f} GB/s")

if __name__ == "__main__":
    main()
