"""GGML Q4_0 / Q8_0 CPU matmul (fastllm's x16 kernels) vs torch F.linear in fp32 and bf16.

Napkin math: a batch-1 GEMV reads every weight byte once and does 2 flops per weight, so it is
bound by DRAM bandwidth: 11008 x 4096 Q4_0 is 25.4 MB (4.5 bits a weight), so at ~37 GB/s it
cannot beat ~0.69 ms, while bf16 (90 MB) needs >= 2.4 ms and fp32 (180 MB) >= 4.9 ms. At batch
8-64 the same bytes feed 8-64x the flops and the int8 dot throughput (vpdpbusd) takes over.

Each shape runs twice: "resident" re-reads one copy (it fits the 32 MB L3 when small enough) and
"cycled" walks over enough copies to exceed the L3 several times, as a model's layers do. Ours
and the peers are timed interleaved, in short bursts whose first call is not counted, and
reported as medians; the read bandwidth
of the machine is torch's sum over a 512 MiB tensor, timed in the same interleaved rounds as
the batch-1 calls of each shape (this VM's bandwidth drifts by +-30% over minutes). Our weights sit
on 2 MiB pages (GGMLLinear allocates them so, see fastllm/kernels/ggml/hugepages.py); torch's on
whatever its allocator gives, as an nn.Linear's would.

    .venv/bin/python bench/bench_ggml_matmul.py [--threads 2] [--batches 1,8,64] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
import torch.nn.functional as F
from _common import cpu_name

from fastllm.kernels import cpu_isa, ggml
from fastllm.kernels.ggml.hugepages import copy_to_huge_pages

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336), (11008, 4096)]  # (N, K) = (out, in)
L3_BYTES = 32 << 20


_BIG: list[torch.Tensor] = []


def _big_tensor() -> torch.Tensor:
    if not _BIG:
        _BIG.append(torch.ones(128 << 20))  # 512 MiB of float32
    return _BIG[0]


def read_bandwidth(repeats: int = 5) -> float:
    """GB/s of torch.sum over a 512 MiB float32 tensor (median of `repeats`)."""
    big = _big_tensor()
    big.sum()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        big.sum()
        rates.append(big.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def copies_for(nbytes: int, cycled: bool, cycle_bytes: int) -> int:
    return max(2, -(-cycle_bytes // nbytes)) if cycled else 1


def build_impls(n: int, k: int, m: int, cycled: bool, cycle_bytes: int, gen: torch.Generator):
    """name -> (list of callables over the weight copies, bytes of one weight copy)."""
    w = torch.randn(n, k, generator=gen)
    x = torch.randn(m, k, generator=gen)
    impls = {}
    for qtype in ("q4_0", "q8_0"):
        packed = ggml.repack(ggml.quantize(w, qtype), qtype)  # on huge pages, as GGMLLinear keeps it
        copies = copies_for(packed.numel(), cycled, cycle_bytes)
        weights = [packed] + [copy_to_huge_pages(packed) for _ in range(copies - 1)]
        impls[qtype] = ([lambda p=p, q=qtype: ggml.ggml_matmul(x, p, q + "_x16", n) for p in weights],
                        packed.numel())
    # The peers multiply the dequantized Q4_0 weight, i.e. the same matrix in fp32 / bf16.
    w_hat = ggml.dequantize(ggml.quantize(w, "q4_0"), "q4_0", (n, k))
    for name, dtype in (("torch fp32", torch.float32), ("torch bf16", torch.bfloat16)):
        wd, xd = w_hat.to(dtype), x.to(dtype)
        nbytes = wd.numel() * wd.element_size()
        weights = [wd] + [wd.clone() for _ in range(copies_for(nbytes, cycled, cycle_bytes) - 1)]
        impls[name] = ([lambda t=t, xd=xd: F.linear(xd, t) for t in weights], nbytes)
    return impls


def time_interleaved(impls, budget_s: float, max_rounds: int, burst: int) -> dict[str, float]:
    """Median seconds per call of each impl. Rounds interleave the impls; within a round each impl
    runs `burst` calls back to back and the first is not counted, so a call never pays for the
    impl before it (its cache evictions, torch's OpenMP threads still spinning)."""
    with torch.inference_mode():
        start = time.perf_counter()
        for calls, _ in impls.values():  # warm up, and estimate a round's length
            calls[0]()
        round_s = (time.perf_counter() - start) * burst
        rounds = int(min(max_rounds, max(5, budget_s / max(round_s, 1e-6))))
        times = {name: [] for name in impls}
        step = 0
        for _ in range(rounds):
            for name, (calls, _) in impls.items():
                for j in range(burst):
                    call = calls[step % len(calls)]
                    step += 1
                    t0 = time.perf_counter()
                    call()
                    if j:
                        times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


READ = "read (torch sum)"


def run(args) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n, k in args.shapes:
        for cycled in (False, True):
            read_gbps = None
            for m in args.batches:
                impls = build_impls(n, k, m, cycled, args.cycle_mb << 20, gen)
                if read_gbps is None:
                    # This VM's DRAM bandwidth drifts with its neighbours, so the first batch of each
                    # group times torch's 512 MiB sum in the same rounds as the GEMVs it is compared to.
                    big = _big_tensor()
                    impls[READ] = ([big.sum], big.numel() * 4)
                medians = time_interleaved(impls, args.budget, args.max_rounds, args.burst)
                if READ in medians:
                    read_gbps = impls.pop(READ)[1] / medians.pop(READ) / 1e9
                for name, seconds in medians.items():
                    rows.append({"shape": f"{n}x{k}", "n": n, "k": k, "batch": m,
                                 "mode": "cycled" if cycled else "resident", "impl": name,
                                 "copies": len(impls[name][0]), "ms": seconds * 1e3,
                                 "gbps": impls[name][1] / seconds / 1e9,
                                 "gflops": 2 * m * n * k / seconds / 1e9,
                                 "vs_fp32": medians["torch fp32"] / seconds,
                                 "vs_bf16": medians["torch bf16"] / seconds, "read_gbps": read_gbps})
                del impls
                print(".", end="", flush=True)
    print()
    return rows


def print_table(rows: list[dict]) -> None:
    print("| shape (N x K) | batch | weights | impl | median ms | weight GB/s | GFLOP/s | fp32 / ours | bf16 / ours |"
          " read GB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours = r["impl"] in ("q4_0", "q8_0")
        print(f"| {r['shape']} | {r['batch']} | {r['mode']} ({r['copies']}x) | {r['impl']} | {r['ms']:.3f} | "
              f"{r['gbps']:.1f} | {r['gflops']:.1f} | {r['vs_fp32']:.2f} | {r['vs_bf16']:.2f} | {r['read_gbps']:.1f} |"
              if ours else
              f"| {r['shape']} | {r['batch']} | {r['mode']} ({r['copies']}x) | {r['impl']} | {r['ms']:.3f} | "
              f"{r['gbps']:.1f} | {r['gflops']:.1f} | | | {r['read_gbps']:.1f} |")


def check_targets(rows: list[dict]) -> list[str]:
    """The issue's targets, each with the figure that decides it (bandwidth measured beside it)."""
    lines = []

    def pick(**kw):
        return [r for r in rows if all(r[key] == value for key, value in kw.items())]

    for r in pick(impl="q4_0", batch=1, mode="cycled"):
        if r["shape"] in ("11008x4096", "14336x4096"):
            ok = r["gbps"] >= 32 and r["gbps"] >= 0.85 * r["read_gbps"] and r["vs_bf16"] >= 5
            lines.append(f"{'PASS' if ok else 'MISS'} Q4_0 GEMV {r['shape']}: {r['gbps']:.1f} GB/s = "
                         f"{100 * r['gbps'] / r['read_gbps']:.0f}% of the {r['read_gbps']:.1f} GB/s read bandwidth "
                         "(target >= 32 GB/s and >= 85%), "
                         f"{r['vs_bf16']:.1f}x torch bf16 (target >= 5x)")
    for r in pick(impl="q8_0", batch=1, mode="cycled"):
        ok = r["gbps"] >= 0.85 * r["read_gbps"]
        lines.append(f"{'PASS' if ok else 'MISS'} Q8_0 GEMV {r['shape']}: {r['gbps']:.1f} GB/s = "
                     f"{100 * r['gbps'] / r['read_gbps']:.0f}% of the {r['read_gbps']:.1f} GB/s read bandwidth "
                     "(target >= 85%)")
    gemm = [r for r in rows if r["impl"] in ("q4_0", "q8_0") and 8 <= r["batch"] <= 64]
    if gemm:
        worst = min(gemm, key=lambda r: r["gflops"])
        slowest = min(gemm, key=lambda r: r["vs_fp32"])
        ok = worst["gflops"] >= 100 and slowest["vs_fp32"] >= 1
        lines.append(f"{'PASS' if ok else 'MISS'} GEMM batch 8-64: lowest {worst['gflops']:.0f} GFLOP/s "
                     f"({worst['impl']} {worst['shape']} b{worst['batch']} {worst['mode']}; target >= 100), "
                     f"lowest fp32/ours {slowest['vs_fp32']:.2f} ({slowest['impl']} {slowest['shape']} "
                     f"b{slowest['batch']} {slowest['mode']}; target >= 1)")
    return lines


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES))
    parser.add_argument("--cycle-mb", type=int, default=4 * (L3_BYTES >> 20),
                        help="cycled weights span at least this many MB (several times the L3)")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds per (shape, batch, mode)")
    parser.add_argument("--max-rounds", type=int, default=40)
    parser.add_argument("--burst", type=int, default=3, help="calls per impl per round (the first is not timed)")
    parser.add_argument("--quick", action="store_true", help="one shape, small budget (a smoke run)")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.quick:
        args.shapes, args.budget, args.max_rounds, args.burst = [(4096, 4096)], 0.3, 5, 2
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    read_before = read_bandwidth()
    rows = run(args)
    read_after = read_bandwidth()
    print(f"{datetime.date.today()} | {cpu_name()} | {os.cpu_count()} CPUs | threads {args.threads} | "
          f"fastllm ISA {cpu_isa()} | torch {torch.__version__}")
    print(f"read bandwidth (torch sum over 512 MiB, {args.threads} threads): {read_before:.1f} GB/s before, "
          f"{read_after:.1f} GB/s after; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("ratio = torch time / our time (above 1: we are faster); weight GB/s counts each impl's own weight bytes")
    print_table(rows)
    for line in check_targets(rows):
        print(line)


if __name__ == "__main__":
    main()
