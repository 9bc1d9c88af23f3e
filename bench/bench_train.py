"""Training-step throughput: fastllm's Llama vs a plain-PyTorch nanoGPT-style model of the same
architecture (RMSNorm, eager RoPE, GQA attention through torch SDPA, SwiGLU, tied embeddings).

One step = forward, cross-entropy, backward, fused AdamW. Both models start from the same weights
(the peer loads our state dict, and the first losses are checked equal, so it is the same
network), steps are interleaved ours/peer, and the median step time gives tokens/s.
CPU: fp32. GPU (when one is visible): bf16 autocast, plus MFU against the card's bf16 peak.

    .venv/bin/python bench/bench_train.py [--preset small] [--batch 8] [--seq 256] [--rounds 5]

Napkin math: a step costs ~6 N FLOPs per token (N parameters, PaLM appendix B) plus attention,
`ModelConfig.flops_per_token`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from _common import machine
from torch import nn

from fastllm.model import Llama, ModelConfig, cross_entropy
from fastllm.train.metrics import peak_flops


class PeerRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).to(dtype)


def rotate(x, cos, sin):  # x: (B, nh, T, hs); HF half-rotation layout
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class PeerAttention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.nh, self.nkv, self.hs = c.n_heads, c.n_kv_heads, c.head_dim
        self.q_proj = nn.Linear(c.dim, c.n_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.dim, c.n_kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_heads * c.head_dim, c.dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, self.nkv, self.hs).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.nh != self.nkv)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class PeerMLP(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.up_proj = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.down_proj = nn.Linear(c.ffn_dim, c.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class PeerBlock(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.input_layernorm = PeerRMSNorm(c.dim, c.norm_eps)
        self.self_attn = PeerAttention(c)
        self.post_attention_layernorm = PeerRMSNorm(c.dim, c.norm_eps)
        self.mlp = PeerMLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class PeerLlama(nn.Module):
    """nanoGPT-style: one module, plain PyTorch ops, SDPA for attention."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.model = nn.ModuleDict(dict(embed_tokens=nn.Embedding(c.vocab_size, c.dim),
                                        layers=nn.ModuleList(PeerBlock(c) for _ in range(c.n_layers)),
                                        norm=PeerRMSNorm(c.dim, c.norm_eps)))
        self.lm_head = nn.Linear(c.dim, c.vocab_size, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim)
        angles = torch.outer(torch.arange(c.max_seq_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, idx):
        T = idx.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.embed_tokens(idx)
        for block in self.model.layers:
            x = block(x, cos, sin)
        return self.lm_head(self.model.norm(x))


def make_step(model, batch, device, bf16):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = cross_entropy(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def timed(step, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(preset: str, batch: int, seq: int, rounds: int, device: torch.device) -> dict:
    config = ModelConfig.preset(preset, max_seq_len=max(seq, 16))
    bf16 = device.type == "cuda"
    torch.manual_seed(0)
    ours = Llama(config).to(device)
    peer = PeerLlama(config).to(device)
    peer.load_state_dict(ours.state_dict(), strict=False)
    tokens = torch.randint(0, config.vocab_size, (batch, seq + 1), device=device)
    steps = {"fastllm": make_step(ours, tokens, device, bf16), "peer": make_step(peer, tokens, device, bf16)}
    first = {name: step() for name, step in steps.items()}  # also the warmup
    if not math.isclose(first["fastllm"], first["peer"], rel_tol=1e-3):
        raise SystemExit(f"models differ: first losses {first}")
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    tokens_per_step = batch * seq
    out = {"params": ours.num_params(), "tokens_per_step": tokens_per_step}
    for name, samples in times.items():
        median = statistics.median(samples)
        out[name] = {"step_s": median, "tokens_per_s": tokens_per_step / median}
        peak = peak_flops(device)
        if peak:
            out[name]["mfu"] = tokens_per_step / median * config.flops_per_token(seq) / peak
    out["ratio"] = out["peer"]["step_s"] / out["fastllm"]["step_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"machine: {machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        batch = args.batch if device.type == "cpu" else max(args.batch, 32)
        result = run(args.preset, batch, args.seq, args.rounds, device)
        precision = "bf16 autocast" if device.type == "cuda" else "fp32"
        print(f"\n{name} ({precision}): preset {args.preset}, {result['params'] / 1e6:.1f}M params, "
              f"batch {batch} x seq {args.seq}, median of {args.rounds} interleaved steps")
        for who in ("fastllm", "peer"):
            r = result[who]
            mfu = f", MFU {r['mfu']:.1%}" if "mfu" in r else ""
            print(f"  {who:8s} {r['step_s'] * 1000:9.1f} ms/step  {r['tokens_per_s']:10,.0f} tokens/s{mfu}")
        print(f"  ratio = peer/ours = {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
