"""A LLaMA-style decoder, single device, top to bottom.

    tokens -> embed_tokens -> n_layers x [x + attn(rmsnorm(x)); x + mlp(rmsnorm(x))] -> rmsnorm -> lm_head

Attention is grouped-query (n_kv_heads divides n_heads) with rotary position encoding in HF's
half-rotation layout; both go through fastllm.kernels (rope(), attention()), so the fastest
backend for the device runs them. The MLP is SwiGLU: down(silu(gate(x)) * up(x)).

Module and parameter names equal transformers' LlamaForCausalLM (`model.layers.0.self_attn.q_proj
.weight`, ...), so a state dict is an HF checkpoint as is. Parallelism, compilation, activation
checkpointing and mixed precision are applied from fastllm.train, never here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastllm import kernels
from fastllm.model.config import ModelConfig


def rope_tables(config: ModelConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (max_seq_len, head_dim / 2) float32; Llama 3.1 scaling stretches the low
    frequencies by `factor` and blends the band between low_freq_factor and high_freq_factor."""
    if config.rope_scaling is None:
        return kernels.rope_tables(config.max_seq_len, config.head_dim, theta=config.rope_theta, device=device)
    s = config.rope_scaling
    inv_freq = 1.0 / config.rope_theta ** (torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim)
    wavelen = 2 * math.pi / inv_freq
    old_len = s["original_max_position_embeddings"]
    smooth = (old_len / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    scaled = torch.where(wavelen > old_len / s["low_freq_factor"], inv_freq / s["factor"], inv_freq)
    medium = (wavelen >= old_len / s["high_freq_factor"]) & (wavelen <= old_len / s["low_freq_factor"])
    scaled = torch.where(medium, (1 - smooth) * scaled / s["factor"] + smooth * scaled, scaled)
    angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float32), scaled)  # (T, hs/2)
    return angles.cos().to(device), angles.sin().to(device)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 like transformers (then cast back)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class KVCache:
    """Keys and values of every layer for positions [0, pos), preallocated to max_len.

    k, v: (n_layers, B, n_kv_heads, max_len, head_dim). The model writes the new positions of a
    forward call into each layer, and advances pos once after the last layer.
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (config.n_layers, batch, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores k, v (B, Hkv, T, D) at [pos, pos+T) and returns all keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} positions > max_len {self.max_len}")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, Hkv, S, D)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x, cos, sin, offset: int, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, nh, hs)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, nkv, hs)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, nkv, hs)
        q, k = kernels.rope(q, k, cos, sin, offset=offset)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh|nkv, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nkv, S, hs), S = offset + T
        y = kernels.attention(q, k, v, causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, nh*hs)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, offset: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, offset, cache, self.layer)
        return x + self.mlp(self.post_attention_layernorm(x))  # (B, T, C)


class Llama(nn.Module):
    """model(input_ids (B, T), cache=None) -> logits (B, T, vocab_size)."""

    def __init__(self, config: ModelConfig, *, init: bool = True):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.dim),
            layers=nn.ModuleList(Block(config, i) for i in range(config.n_layers)),
            norm=RMSNorm(config.dim, config.norm_eps),
        ))
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, hs/2) float32
        self.register_buffer("rope_sin", sin, persistent=False)
        if init:
            self.reset_parameters()

    @classmethod
    def empty(cls, config: ModelConfig, device: str | torch.device = "cpu") -> Llama:
        """A model with uninitialised weights (no init cost), to be filled from a checkpoint."""
        with torch.device("meta"):
            model = cls(config, init=False)
        return model.materialize(device)

    def materialize(self, device: str | torch.device = "cpu") -> Llama:
        """Gives a model built on the meta device real (uninitialised) storage on `device`."""
        self.to_empty(device=device)
        if self.config.tie_embeddings:  # to_empty gives each module its own tensor
            self.lm_head.weight = self.model.embed_tokens.weight
        self.reset_rope_tables()
        return self

    def reset_rope_tables(self) -> None:
        self.rope_cos, self.rope_sin = rope_tables(self.config, self.rope_cos.device)

    def reset_parameters(self) -> None:
        """N(0, init_std) everywhere; residual output projections scaled by 1/sqrt(2 n_layers)
        (GPT-2) so the residual stream's variance does not grow with depth."""
        std = self.config.init_std
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                scaled = name.endswith(("o_proj", "down_proj"))
                nn.init.normal_(module.weight, 0.0, std / math.sqrt(2 * self.config.n_layers) if scaled else std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def _apply(self, fn, recurse=True):
        # .to(bfloat16) would round the RoPE tables; rebuild them in float32 on their new device.
        super()._apply(fn, recurse)
        if self.rope_cos.dtype != torch.float32 and not self.rope_cos.is_meta:
            self.reset_rope_tables()
        return self

    def new_cache(self, batch: int, max_len: int | None = None, dtype=None) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.config, batch, max_len or self.config.max_seq_len, weight.device,
                       dtype or weight.dtype)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        offset = cache.pos if cache is not None else 0
        if offset + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {offset + T} tokens exceeds max_seq_len {self.config.max_seq_len}")
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        for block in self.model.layers:
            x = block(x, self.rope_cos, self.rope_sin, offset, cache)  # (B, T, C)
        x = self.model.norm(x)
        if cache is not None:
            cache.pos += T
        return self.lm_head(x)  # (B, T, vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token loss in float32; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)
