"""Host cost per call of the kernel ops on tiny tensors, next to the torch call a user would make
instead (SDPA for attention, eager rotate-half for RoPE).

Generation with a KV cache calls RoPE and attention once per layer per token on a handful of
values: there the GPU waits on Python, so the microseconds spent before a kernel is launched
(argument checks, backend choice, torch.library's custom-op and autograd wrappers, Triton's
launcher) are the speed. Each figure is wall-clock time per call over back-to-back calls with one
synchronisation at the end (median of rounds); on a GPU that is the host cost whenever it exceeds
the kernel's own few microseconds. ratio = peer time / ours (above 1: ours is cheaper).

    .venv/bin/python bench/bench_call_overhead.py [--calls 300] [--rounds 7] [--profile]

--profile prints cProfile's top entries for one call of each of our ops, to show where the host
time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import pstats
import statistics
import time

import torch
import torch.nn.functional as F
from _common import cpu_name

from fastllm.kernels import attention, dispatch, rope, rope_tables


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_call_us(fn, device: torch.device, calls: int, rounds: int) -> float:
    for _ in range(10):
        fn()
    _sync(device)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attention_calls(device: torch.device) -> tuple[dict, dict]:
    """Decoding-sized attention: one query of 8 heads against 16 cached keys of 2 kv heads."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    q = torch.randn(1, 8, 1, 64, device=device, dtype=dtype)
    k, v = (torch.randn(1, 2, 16, 64, device=device, dtype=dtype) for _ in range(2))
    peer = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)}
    ours = {b: (lambda b=b: attention(q, k, v, causal=True, backend=b)) for b in _backends("attention", device)}
    return peer, ours


def rope_calls(device: torch.device) -> tuple[dict, dict]:
    """One decoding token: 8 q heads and 2 k heads of dimension 64 at position 5."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    q = torch.randn(1, 1, 8, 64, device=device, dtype=dtype)
    k = torch.randn(1, 1, 2, 64, device=device, dtype=dtype)
    cos, sin = rope_tables(64, 64, device=device)
    cos_full = torch.cat((cos, cos), -1)[5:6, None, :].to(dtype)
    sin_full = torch.cat((sin, sin), -1)[5:6, None, :].to(dtype)
    peer = {"eager": lambda: (q * cos_full + _rotate_half(q) * sin_full, k * cos_full + _rotate_half(k) * sin_full)}
    ours = {b: (lambda b=b: rope(q, k, cos, sin, offset=5, backend=b)) for b in _backends("rope", device)}
    return peer, ours


def _backends(op: str, device: torch.device) -> list[str]:
    names = ("cuda", "triton") if device.type == "cuda" else ("cpp", "ref")
    return [b for b in names if dispatch.unavailable_reason(op, b, device) is None]


def report(device: torch.device, calls: int, rounds: int) -> None:
    print(f"\n== {device.type}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}; "
          f"microseconds per call (ratio = peer / ours)")
    print(f"{'op':>10} {'peer':>8} {'peer us':>8} {'ours':>8} {'ours us':>8} {'ratio':>6}")
    with torch.no_grad():
        for op, make in (("attention", attention_calls), ("rope", rope_calls)):
            peer, ours = make(device)
            (peer_name, peer_fn), = peer.items()
            peer_us = per_call_us(peer_fn, device, calls, rounds)
            for name, fn in ours.items():
                us = per_call_us(fn, device, calls, rounds)
                print(f"{op:>10} {peer_name:>8} {peer_us:8.1f} {name:>8} {us:8.1f} {peer_us / us:6.2f}")


def profile(device: torch.device, calls: int) -> None:
    with torch.no_grad():
        for op, make in (("attention", attention_calls), ("rope", rope_calls)):
            for name, fn in make(device)[1].items():
                fn()
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(calls):
                    fn()
                profiler.disable()
                _sync(device)
                print(f"\n-- cProfile: {op} backend={name} on {device.type}, {calls} calls")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile each of our ops")
    args = parser.parse_args()
    print(f"bench_call_overhead {datetime.date.today()}  torch {torch.__version__}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        report(device, args.calls, args.rounds)
        if args.profile:
            profile(device, args.calls)


if __name__ == "__main__":
    main()
