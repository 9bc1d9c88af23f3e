"""Tile sweep for the Triton attention kernels on a GPU: times every candidate configuration of
the forward, dk/dv and dq kernels at one shape (bf16, causal, T = S = 4096, 16 heads, 16K tokens
per batch) next to SDPA's flash backend, and prints the fastest per kernel in the form of
fastllm/kernels/attention/triton.py's GPU_CONFIGS table.

A GPU lease is short and Triton compiles each configuration once (seconds each), so the compiles
can run first in parallel processes that fill Triton's on-disk cache, timing nothing:

    python bench/tune_attention.py --compile-only --shard 0 --shards 4 &   # ... shards 1..3
    python bench/tune_attention.py                                         # then time, in one process

Timing runs in one process on an otherwise idle GPU; each figure is the median of interleaved
calls (bench/_common.py).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from _common import interleaved, time_gpu
from triton.runtime.errors import OutOfResources

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastllm.kernels.attention import triton as tri  # noqa: E402

KINDS = ("fwd", "dkdv", "dq")
# (block_m, block_n, warps, stages) per (kind, head dim); the table's current entries are among them.
CANDIDATES = {
    ("fwd", 128): [(128, 64, 8, 3), (128, 64, 8, 2), (128, 64, 4, 3), (128, 128, 8, 3), (128, 128, 8, 2),
                   (128, 32, 8, 3), (64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 8, 4)],
    ("fwd", 64): [(128, 64, 4, 3), (128, 128, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3),
                  (128, 32, 4, 3), (64, 128, 4, 3)],
    ("dkdv", 128): [(32, 64, 8, 2), (32, 128, 8, 2), (64, 64, 8, 2), (64, 128, 8, 2), (32, 64, 4, 2),
                    (64, 64, 4, 3), (32, 128, 8, 3), (16, 128, 8, 2)],
    ("dkdv", 64): [(32, 128, 8, 3), (32, 128, 4, 3), (64, 128, 8, 3), (64, 64, 4, 3), (32, 64, 4, 2),
                   (64, 128, 8, 2)],
    ("dq", 128): [(64, 32, 8, 2), (128, 32, 8, 2), (64, 64, 8, 2), (128, 64, 8, 2), (64, 32, 4, 2),
                  (128, 32, 8, 3), (64, 64, 4, 3)],
    ("dq", 64): [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (64, 32, 4, 2)],
}


def _inputs(head_dim: int, seq: int, heads: int, tokens: int):
    batch = max(1, tokens // seq)
    make = lambda: torch.randn(batch, heads, seq, head_dim, device="cuda", dtype=torch.bfloat16)
    return make(), make(), make(), make()


def _pin(kind: str, head_dim: int, cfg) -> None:
    """Makes the launcher use `cfg` for this kernel (its table entry's remembered choice)."""
    tri._working[(kind, head_dim, 2, torch.device("cuda", torch.cuda.current_device()))] = tri._cfg(*cfg)


def _pin_defaults(head_dim: int) -> None:
    for kind in KINDS:
        first = tri.GPU_CONFIGS[(kind, head_dim, 2)][0]
        _pin(kind, head_dim, (first["BLOCK_M"], first["BLOCK_N"], first["num_warps"], first["num_stages"]))


def _step(kind: str, q, k, v, grad, scale: float):
    """The call whose time a `kind` configuration changes: the forward, or the whole backward."""
    if kind == "fwd":
        return lambda: tri.attention_triton_forward(q, k, v, True, scale)
    out, lse = tri.attention_triton_forward(q, k, v, True, scale)
    return lambda: tri.attention_triton_backward(grad, q, k, v, out, lse, None, True, scale)


def _try(fn) -> str | None:
    """Runs fn once; the reason it cannot run with the pinned configuration, or None."""
    try:
        fn()
        torch.cuda.synchronize()
    except OutOfResources as exc:
        return f"out of resources ({exc})"
    except Exception as exc:  # a sweep reports a configuration Triton cannot build and goes on
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def jobs(head_dims) -> list[tuple[str, int, tuple]]:
    return [(kind, hd, cfg) for hd in head_dims for kind in KINDS for cfg in CANDIDATES[(kind, hd)]]


def compile_only(args) -> None:
    for i, (kind, hd, cfg) in enumerate(jobs(args.head_dims)):
        if i % args.shards != args.shard:
            continue
        q, k, v, grad = _inputs(hd, args.seq, args.heads, args.tokens)
        _pin_defaults(hd)
        _pin(kind, hd, cfg)
        reason = _try(_step(kind, q, k, v, grad, 1 / math.sqrt(hd)))
        print(f"compiled {kind} hd{hd} {cfg}: {reason or 'ok'}", flush=True)


def sdpa_seconds(q, k, v, grad, repeats: int) -> tuple[float, float]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    leaves = [t.detach().requires_grad_() for t in (q, k, v)]

    def forward():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(*leaves, is_causal=True)

    def forward_no_grad():
        with torch.no_grad():
            forward()

    medians = interleaved({"fwd": forward_no_grad, "fwd+bwd": lambda: forward().backward(grad)}, repeats, time_gpu)
    return medians["fwd"], medians["fwd+bwd"]


def sweep_head_dim(hd: int, args) -> dict[str, tuple]:
    q, k, v, grad = _inputs(hd, args.seq, args.heads, args.tokens)
    batch = q.shape[0]
    flops = 4 * batch * args.heads * args.seq * args.seq * hd / 2
    sdpa_fwd, sdpa_all = sdpa_seconds(q, k, v, grad, args.repeats)
    print(f"\n== head dim {hd}: B={batch} H={args.heads} T=S={args.seq} causal bf16; SDPA flash fwd "
          f"{flops / sdpa_fwd / 1e12:.1f} TFLOP/s ({sdpa_fwd * 1e3:.3f} ms), fwd+bwd "
          f"{3.5 * flops / sdpa_all / 1e12:.1f} TFLOP/s ({sdpa_all * 1e3:.3f} ms)")
    best, best_ms = {}, {}
    for kind in KINDS:
        for cfg in CANDIDATES[(kind, hd)]:
            _pin_defaults(hd)
            _pin(kind, hd, cfg)
            step = _step(kind, q, k, v, grad, 1 / math.sqrt(hd))
            reason = _try(step)
            if reason:
                print(f"{kind:>5} {str(cfg):>20}  {reason}")
                continue
            seconds = interleaved({"step": step}, args.repeats, time_gpu)["step"]
            what = "fwd" if kind == "fwd" else "whole bwd"
            print(f"{kind:>5} {str(cfg):>20}  {seconds * 1e3:8.3f} ms ({what})", flush=True)
            if seconds < best_ms.get(kind, math.inf):
                best[kind], best_ms[kind] = cfg, seconds
    _pin_defaults(hd)
    for kind, cfg in best.items():
        _pin(kind, hd, cfg)
    fwd = _step("fwd", q, k, v, grad, 1 / math.sqrt(hd))
    bwd = _step("bwd", q, k, v, grad, 1 / math.sqrt(hd))
    medians = interleaved({"fwd": fwd, "bwd": bwd}, args.repeats, time_gpu)
    total = medians["fwd"] + medians["bwd"]
    print(f"best: fwd {flops / medians['fwd'] / 1e12:.1f} TFLOP/s = {sdpa_fwd / medians['fwd']:.2f}x SDPA; "
          f"fwd+bwd {3.5 * flops / total / 1e12:.1f} TFLOP/s = {sdpa_all / total:.2f}x SDPA")
    for kind, cfg in best.items():
        print(f'    ("{kind}", {hd}, 2): [_cfg{cfg}, ...],')
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dims", type=int, nargs="+", default=[128, 64], choices=[64, 128])
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile-only", action="store_true", help="run each configuration once, time nothing")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("tune_attention.py: needs a CUDA GPU (none is visible to torch)")
    torch.manual_seed(0)
    if args.compile_only:
        compile_only(args)
        return
    print(f"tune_attention: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for hd in args.head_dims:
        sweep_head_dim(hd, args)


if __name__ == "__main__":
    main()
