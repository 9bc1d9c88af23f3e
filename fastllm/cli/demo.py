"""`fastllm demo`: a few-second tour of the GGML kernels. Quantizes a random Linear to Q4_0 and
Q8_0, checks the bytes and the matmul against the pure-torch reference, and times GGMLLinear
against torch's fp32 and bf16 Linear at batch 1."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from fastllm.cli.main import Command
from fastllm.utils.errors import FastLLMError


@dataclass
class DemoConfig:
    in_features: int = field(default=4096, metadata={"help": "Linear input size (a multiple of 32)"})
    out_features: int = field(default=4096, metadata={"help": "Linear output size"})
    repeats: int = field(default=30, metadata={"help": "timed calls per implementation (median reported)"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: torch's default)"})
    seed: int = field(default=0, metadata={"help": "random seed"})


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _check_against_reference(linear, layer, qtype: str, x) -> float:
    """Max |kernel - ref| of the layer's output; raises if the bytes differ from ref.py's."""
    import torch

    from fastllm.kernels.ggml import ref

    weight = linear.weight.detach()
    if not torch.equal(layer.ggml_bytes(), ref.quantize(weight, qtype)):
        raise FastLLMError(f"demo: {qtype} bytes differ from the reference quantizer; please report this")
    expected = ref.ggml_matmul_ref(x, layer.ggml_bytes(), qtype, layer.out_features) + linear.bias.detach()
    return float((layer(x) - expected).abs().max())


def run(config: DemoConfig) -> int:
    import torch
    from torch import nn

    from fastllm.kernels import cpu_isa
    from fastllm.kernels.ggml import GGMLLinear

    if config.in_features <= 0 or config.in_features % 32 or config.out_features <= 0:
        raise FastLLMError(f"demo: in_features={config.in_features} must be a positive multiple of 32 "
                           f"and out_features={config.out_features} positive")
    if config.repeats < 1 or config.threads < 0:
        raise FastLLMError(f"demo: repeats={config.repeats} must be at least 1 and threads={config.threads} "
                           "at least 0 (0: torch's default)")
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    n, k = config.out_features, config.in_features
    linear = nn.Linear(k, n)
    x = torch.randn(1, k)
    print(f"Linear {k} -> {n}, batch 1, {torch.get_num_threads()} threads, CPU path {cpu_isa()}")

    rows = []
    with torch.inference_mode():
        fp32_ms = _median_ms(lambda: linear(x), config.repeats)
        bf16 = nn.Linear(k, n).to(torch.bfloat16)
        bf16.load_state_dict(linear.state_dict())
        xb = x.to(torch.bfloat16)
        bf16_ms = _median_ms(lambda: bf16(xb), config.repeats)
        rows.append(("torch fp32", k * n * 4, fp32_ms, None))
        rows.append(("torch bf16", k * n * 2, bf16_ms, None))
        for qtype in ("q4_0", "q8_0"):
            layer = GGMLLinear.from_linear(linear, qtype)
            gap = _check_against_reference(linear, layer, qtype, x)
            ms = _median_ms(lambda layer=layer: layer(x), config.repeats)
            rows.append((f"GGMLLinear {qtype}", layer.packed.numel(), ms, gap))

    print(f"{'implementation':<18} {'weights MB':>10} {'median ms':>10} {'GB/s':>7} {'vs fp32':>8} {'vs bf16':>8}  check vs ref.py")
    for name, nbytes, ms, gap in rows:
        check = "" if gap is None else f"bytes equal, max |diff| {gap:.1e}"
        print(f"{name:<18} {nbytes / 1e6:>10.1f} {ms:>10.3f} {nbytes / ms / 1e6:>7.1f} "
              f"{fp32_ms / ms:>7.2f}x {bf16_ms / ms:>7.2f}x  {check}")
    print("ratios are torch time / this time (above 1: faster); `fastllm demo --help` for options")
    return 0


COMMANDS = {None: Command("Kernel demo: quantize a random Linear to GGML Q4_0/Q8_0, check it against the "
                          "reference and time it against torch fp32/bf16 at batch 1.", DemoConfig, run)}
