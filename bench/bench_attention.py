"""Attention: fastllm's kernels vs torch.nn.functional.scaled_dot_product_attention.

Napkin math: the forward does 4 * B*H*T*S*D flops (two matmuls), half of that when causal; the
backward 2.5x the forward (five matmuls, one recomputed). TFLOP/s below use these counts, as
the flash-attention benchmarks do. Decoding (T = 1) is bound by reading the KV cache,
2 * B*Hkv*S*D*sizeof(dtype) bytes, so it is reported in GB/s.

GPU (when one is visible): bf16, causal, head dim 128 (--head-dim 64: 64), 16K tokens per batch (B = 16384 / T),
16 heads, T = S in 1K..16K: the Triton forward and the CUDA ones (mma.sync, and wgmma with
128- and 64-row tiles on H100 / H200) vs SDPA's flash backend, and forward + backward (the CUDA backend's backward is the
Triton one); then the split-KV decoding kernel vs
SDPA on a 32K-token cache. A GPU sample is several calls back to back (bench/_common.py's
gpu_calls_timer: host overhead hidden behind queued kernels, as in a model); decoding is also
timed from a CUDA graph (device time alone). CPU: the reference backend (torch's fused CPU flash kernels behind
fastllm::attention, which the model uses on a CPU) vs calling SDPA directly and vs the plain
materialised softmax; the GPU part is skipped with a note.

    .venv/bin/python bench/bench_attention.py [--repeats 10] [--quick] [--head-dim 64]
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch
import torch.nn.functional as F
from _common import cpu_name, gpu_calls_timer, graphed, interleaved, time_cpu, time_gpu

from fastllm.kernels import attention
from fastllm.kernels.attention.ref import attention_ref

GPU_SEQS = [1024, 2048, 4096, 8192, 16384]
GPU_TOKENS, GPU_HEADS, HEAD_DIM = 16384, 16, 128
CPU_SHAPES = [(8, 8, 4, 256, 64), (4, 16, 4, 512, 64)]  # (B, H, Hkv, T, D), T = S
TRAIN_CALLS, DECODE_CALLS = 5, 20  # back-to-back calls per GPU sample


def attention_flops(batch, heads, seq_q, seq_k, head_dim, causal, backward=False) -> float:
    flops = 4 * batch * heads * seq_q * seq_k * head_dim / (2 if causal else 1)
    return flops * 3.5 if backward else flops  # forward + backward = 1 + 2.5 forwards


def _leaves(batch, heads, kv_heads, seq_q, seq_k, head_dim, dtype, device):
    make = lambda h, s: torch.randn(batch, h, s, head_dim, device=device, dtype=dtype, requires_grad=True)
    return make(heads, seq_q), make(kv_heads, seq_k), make(kv_heads, seq_k)


def _forward(fn):
    def run():
        with torch.no_grad():
            fn()
    return run


def _forward_backward(fn, grad):
    return lambda: fn().backward(grad)


def cpu_candidates(q, k, v, grad) -> dict:
    ours = lambda: attention(q, k, v, causal=True)
    sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    naive = lambda: attention_ref(q, k, v, causal=True)[0]
    return {"ours fwd": _forward(ours), "sdpa fwd": _forward(sdpa), "naive fwd": _forward(naive),
            "ours fwd+bwd": _forward_backward(ours, grad), "sdpa fwd+bwd": _forward_backward(sdpa, grad),
            "naive fwd+bwd": _forward_backward(naive, grad)}


def run_cpu(repeats: int) -> None:
    print(f"\n== CPU: {cpu_name()}, {torch.get_num_threads()} threads, float32, causal")
    print(f"{'(B,H,Hkv,T,D)':>20} {'pass':>8} {'ours ms':>9} {'sdpa ms':>9} {'naive ms':>9} "
          f"{'ours GFLOP/s':>12} {'sdpa/ours':>9} {'naive/ours':>10}")
    for batch, heads, kv_heads, seq, head_dim in CPU_SHAPES:
        q, k, v = _leaves(batch, heads, kv_heads, seq, seq, head_dim, torch.float32, "cpu")
        grad = torch.randn(batch, heads, seq, head_dim)
        medians = interleaved(cpu_candidates(q, k, v, grad), repeats, time_cpu)
        for kind, backward in (("fwd", False), ("fwd+bwd", True)):
            ours, sdpa, naive = (medians[f"{name} {kind}"] for name in ("ours", "sdpa", "naive"))
            gflops = attention_flops(batch, heads, seq, seq, head_dim, True, backward) / ours / 1e9
            print(f"{str((batch, heads, kv_heads, seq, head_dim)):>20} {kind:>8} {ours * 1e3:9.2f} {sdpa * 1e3:9.2f} "
                  f"{naive * 1e3:9.2f} {gflops:12.1f} {sdpa / ours:9.2f} {naive / ours:10.2f}")


def _with_cuda_kernel(fn, kernel):
    """fn with FASTLLM_CUDA_ATTENTION=kernel (the cuda backend's forward kernel) while it runs."""
    def run():
        saved = os.environ.get("FASTLLM_CUDA_ATTENTION")
        os.environ["FASTLLM_CUDA_ATTENTION"] = kernel
        try:
            return fn()
        finally:
            if saved is None:
                del os.environ["FASTLLM_CUDA_ATTENTION"]
            else:
                os.environ["FASTLLM_CUDA_ATTENTION"] = saved
    return run


def gpu_columns() -> list[tuple[str, str, str | None]]:
    """(label, backend, cuda forward kernel) of every fastllm forward that runs on this GPU."""
    from fastllm.kernels import dispatch
    from fastllm.kernels.attention import cuda as cuda_attention

    device = torch.device("cuda", torch.cuda.current_device())
    columns = []
    if dispatch.unavailable_reason("attention", "triton", device) is None:
        columns.append(("triton", "triton", None))
    if dispatch.unavailable_reason("attention", "cuda", device) is None:
        columns.append(("cuda-mma", "cuda", "mma"))
        if cuda_attention.wgmma_unavailable_reason(device) is None:
            columns += [(f"cuda-{kernel}", "cuda", kernel) for kernel in cuda_attention.WGMMA_KERNELS]
    return columns


def gpu_candidates(q, k, v, grad, columns) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    candidates = {"sdpa fwd": _forward(sdpa), "sdpa fwd+bwd": _forward_backward(sdpa, grad)}
    for label, backend, kernel in columns:
        ours = lambda backend=backend: attention(q, k, v, causal=True, backend=backend)
        fwd, fwd_bwd = _forward(ours), _forward_backward(ours, grad)
        if kernel:
            fwd, fwd_bwd = _with_cuda_kernel(fwd, kernel), _with_cuda_kernel(fwd_bwd, kernel)
        candidates[f"{label} fwd"], candidates[f"{label} fwd+bwd"] = fwd, fwd_bwd
    return candidates


def run_gpu_training(repeats: int, seqs, head_dim: int) -> None:
    columns = gpu_columns()
    labels = [label for label, *_ in columns]
    print(f"\n== GPU: {torch.cuda.get_device_name(0)}, bf16, causal, head dim {head_dim}, {GPU_HEADS} heads, "
          f"{GPU_TOKENS} tokens per batch; TFLOP/s (ratio = ours / sdpa flash)")
    print(f"{'T':>6} {'pass':>8} {'sdpa':>7} " + " ".join(f"{b:>10} {'ratio':>6}" for b in labels))
    for seq in seqs:
        batch = max(1, GPU_TOKENS // seq)
        q, k, v = _leaves(batch, GPU_HEADS, GPU_HEADS, seq, seq, head_dim, torch.bfloat16, "cuda")
        grad = torch.randn_like(q)
        medians = interleaved(gpu_candidates(q, k, v, grad, columns), repeats, gpu_calls_timer(TRAIN_CALLS))
        for kind, backward in (("fwd", False), ("fwd+bwd", True)):
            flops = attention_flops(batch, GPU_HEADS, seq, seq, head_dim, True, backward)
            sdpa = flops / medians[f"sdpa {kind}"] / 1e12
            cells = []
            for label in labels:
                ours = flops / medians[f"{label} {kind}"] / 1e12
                cells.append(f"{ours:10.1f} {ours / sdpa:6.2f}")
            print(f"{seq:>6} {kind:>8} {sdpa:7.1f} " + " ".join(cells))


def run_gpu_decode(repeats: int) -> None:
    print(f"\n== GPU decoding: one query, bf16, 32 heads / 8 kv heads, head dim {HEAD_DIM}; GB/s of KV read. "
          f"'stream': {DECODE_CALLS} calls back to back (host cost included where it exceeds the kernel's); "
          f"'dev': the same calls replayed from a CUDA graph (device time); copy: a device-to-device copy "
          f"of the cache's bytes (read + write counted), the bandwidth ceiling; ratio = sdpa time / ours")
    print(f"{'B':>3} {'S':>6} {'sdpa stream':>11} {'cuda stream':>11} {'ratio':>6} {'sdpa dev':>8} {'cuda dev':>8} "
          f"{'ratio':>6} {'copy':>6}")
    for batch, seq in ((1, 32768), (8, 32768), (32, 4096)):
        stream, dev, nbytes = _decode_times(batch, seq, repeats)
        gbps = {kind: {name: nbytes / t / 1e9 for name, t in times.items()} for kind, times in
                (("stream", stream), ("dev", dev))}
        print(f"{batch:>3} {seq:>6} {gbps['stream']['sdpa']:11.0f} {gbps['stream']['cuda']:11.0f} "
              f"{stream['sdpa'] / stream['cuda']:6.2f} {gbps['dev']['sdpa']:8.0f} {gbps['dev']['cuda']:8.0f} "
              f"{dev['sdpa'] / dev['cuda']:6.2f} {2 * gbps['dev']['copy']:6.0f}")


def _decode_times(batch: int, seq: int, repeats: int) -> tuple[dict, dict, int]:
    """Seconds per call (back-to-back stream, CUDA-graph device time) and the cache's bytes."""
    q = torch.randn(batch, 32, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, 8, seq, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    copy_src, copy_dst = torch.cat((k, v)), torch.empty(2 * k.numel(), device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        candidates = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                      "cuda": lambda: attention(q, k, v, causal=True, backend="cuda")}
        stream = interleaved(candidates, repeats, gpu_calls_timer(DECODE_CALLS))
        graphs = {name: graphed(fn, DECODE_CALLS) for name, fn in candidates.items()}
        graphs["copy"] = graphed(lambda: copy_dst.copy_(copy_src.view(-1)), DECODE_CALLS)
        dev = {name: t / DECODE_CALLS for name, t in interleaved(graphs, repeats, time_gpu).items()}
    return stream, dev, 2 * k.numel() * k.element_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and lengths")
    parser.add_argument("--head-dim", type=int, choices=(64, 128), default=HEAD_DIM,
                        help="head dim of the GPU training table (decoding keeps 128)")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    print(f"bench_attention {datetime.date.today()}  torch {torch.__version__}")
    if torch.cuda.is_available():
        run_gpu_training(repeats, GPU_SEQS[:3] if args.quick else GPU_SEQS, args.head_dim)
        run_gpu_decode(repeats)
    else:
        print("\nGPU part skipped: no GPU visible. The Triton/CUDA kernels vs SDPA flash (TFLOP/s) and the "
              "decoding kernel (GB/s) need one; on a CPU, Triton only runs in its interpreter (a "
              "correctness tool, not a speed path).")
    run_cpu(repeats)


if __name__ == "__main__":
    main()
