"""Rotary position embedding: fastllm's kernels vs eager PyTorch (HF's rotate_half formulation).

Napkin math: RoPE reads q and k once and writes them once, 2 * B*T*(Hq+Hk)*D * sizeof(dtype)
bytes (the cos/sin rows are a rounding error), with ~3 flops per element: it is bound by memory
bandwidth everywhere. Eager PyTorch makes ~6 passes (two multiplies, a negation, a concat, an
add, per tensor) and allocates the temporaries. GB/s below counts only the minimal bytes.

CPU: the C++ kernel (active ISA path, out of place and in place) vs eager torch on the same
thread count. GPU (when one is visible): the Triton and CUDA kernels vs eager torch, bf16, both
out of place (eager allocates its results too); ours in place as well. Ours and the peer are
timed interleaved; medians are reported. On the GPU a sample is GPU_CALLS calls back to back
(as a model's layers issue them: the host prepares call n+1 while the GPU runs call n), so "ms"
is a call's share of that stream, host overhead included where it exceeds the kernel's time (a
decode step). "dev" columns replay the same calls captured in a CUDA graph: device time alone,
what the GB/s figure (the kernel's bandwidth) is computed from. One call timed between two
events would instead add the whole host path to the kernel time, GPU idle meanwhile.

    .venv/bin/python bench/bench_rope.py [--threads N] [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import datetime

import torch
from _common import cpu_name, gpu_calls_timer, graphed, interleaved, time_cpu, time_gpu

from fastllm.kernels import cpu_isa, rope, rope_tables

CPU_SHAPES = [  # (B, T, Hq, Hk, D)
    (1, 1, 32, 8, 128),      # decoding one token
    (8, 256, 8, 2, 64),      # a small model's training batch
    (2, 1024, 32, 8, 128),   # a LLaMA-8B-shaped prefill
]
GPU_SHAPES = [(1, 1, 32, 8, 128), (8, 1024, 32, 8, 128), (4, 4096, 32, 8, 128)]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def eager_rope(q, k, cos_full, sin_full):
    """transformers' apply_rotary_pos_emb, with the (1, T, 1, D) cos/sin prepared outside."""
    return q * cos_full + _rotate_half(q) * sin_full, k * cos_full + _rotate_half(k) * sin_full


def _inputs(shape, dtype, device):
    batch, seq, q_heads, k_heads, head_dim = shape
    q = torch.randn(batch, seq, q_heads, head_dim, device=device).to(dtype)
    k = torch.randn(batch, seq, k_heads, head_dim, device=device).to(dtype)
    cos, sin = rope_tables(seq + 16, head_dim, device=device)
    rows = slice(16, 16 + seq)  # an offset, as in decoding
    cos_full = torch.cat([cos[rows], cos[rows]], -1)[None, :, None, :].to(dtype)
    sin_full = torch.cat([sin[rows], sin[rows]], -1)[None, :, None, :].to(dtype)
    return q, k, cos, sin, cos_full, sin_full


def _bytes(shape, dtype) -> int:
    batch, seq, q_heads, k_heads, head_dim = shape
    return 2 * batch * seq * (q_heads + k_heads) * head_dim * torch.tensor([], dtype=dtype).element_size()


def cpu_candidates(q, k, cos, sin, cos_full, sin_full) -> dict:
    q_inplace, k_inplace = q.clone(), k.clone()
    return {
        "eager": lambda: eager_rope(q, k, cos_full, sin_full),
        "ours": lambda: rope(q, k, cos, sin, offset=16, backend="cpp"),
        # Rotating the same buffers again and again is fine for timing.
        "inplace": lambda: rope(q_inplace, k_inplace, cos, sin, offset=16, inplace=True, backend="cpp"),
    }


def gpu_candidates(backend, q, k, cos, sin, cos_full, sin_full) -> dict:
    q_inplace, k_inplace = q.clone(), k.clone()
    return {
        "eager": lambda: eager_rope(q, k, cos_full, sin_full),
        "ours": lambda: rope(q, k, cos, sin, offset=16, backend=backend),
        "inplace": lambda: rope(q_inplace, k_inplace, cos, sin, offset=16, inplace=True, backend=backend),
    }


GPU_CALLS = 20  # calls per GPU sample


def run_cpu(repeats: int, shapes) -> None:
    print(f"\n== CPU: {cpu_name()}, {torch.get_num_threads()} threads, ISA path {cpu_isa()}")
    print(f"{'shape (B,T,Hq,Hk,D)':>22} {'dtype':>9} {'eager ms':>9} {'ours ms':>9} {'inplace ms':>10} "
          f"{'ours GB/s':>9} {'ratio':>6} {'ratio inplace':>13}")
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            medians = interleaved(cpu_candidates(*_inputs(shape, dtype, "cpu")), repeats, time_cpu)
            gbps = _bytes(shape, dtype) / medians["ours"] / 1e9
            print(f"{str(shape):>22} {str(dtype)[6:]:>9} {medians['eager'] * 1e3:9.3f} {medians['ours'] * 1e3:9.3f} "
                  f"{medians['inplace'] * 1e3:10.3f} {gbps:9.1f} {medians['eager'] / medians['ours']:6.2f} "
                  f"{medians['eager'] / medians['inplace']:13.2f}")


def run_gpu(repeats: int) -> None:
    from fastllm.kernels import dispatch

    print(f"\n== GPU: {torch.cuda.get_device_name(0)}, {GPU_CALLS} calls per sample")
    backends = [b for b in ("cuda", "triton") if dispatch.unavailable_reason("rope", b, torch.device("cuda")) is None]
    print(f"{'shape (B,T,Hq,Hk,D)':>22} {'backend':>8} {'eager ms':>9} {'ours ms':>9} {'inplace ms':>10} "
          f"{'ratio':>6} {'eager dev ms':>12} {'ours dev ms':>11} {'ours dev GB/s':>13} {'inplace dev GB/s':>16} "
          f"{'dev ratio':>9}")
    for shape in GPU_SHAPES:
        inputs = _inputs(shape, torch.bfloat16, "cuda")
        nbytes = _bytes(shape, torch.bfloat16)
        for backend in backends:
            candidates = gpu_candidates(backend, *inputs)
            host = interleaved(candidates, repeats, gpu_calls_timer(GPU_CALLS))
            graphs = {name: graphed(fn, GPU_CALLS) for name, fn in candidates.items()}
            dev = {name: t / GPU_CALLS for name, t in interleaved(graphs, repeats, time_gpu).items()}
            print(f"{str(shape):>22} {backend:>8} {host['eager'] * 1e3:9.3f} {host['ours'] * 1e3:9.3f} "
                  f"{host['inplace'] * 1e3:10.3f} {host['eager'] / host['ours']:6.2f} {dev['eager'] * 1e3:12.4f} "
                  f"{dev['ours'] * 1e3:11.4f} {nbytes / dev['ours'] / 1e9:13.1f} "
                  f"{nbytes / dev['inplace'] / 1e9:16.1f} {dev['eager'] / dev['ours']:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, small shapes only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    print(f"bench_rope {datetime.date.today()}  torch {torch.__version__}  ratio = eager time / our time")
    run_cpu(repeats, CPU_SHAPES[:2] if args.quick else CPU_SHAPES)
    if torch.cuda.is_available():
        run_gpu(repeats)
    else:
        print("\nGPU part skipped: no GPU visible (Triton/CUDA RoPE GB/s need one).")


if __name__ == "__main__":
    main()
