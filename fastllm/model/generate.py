"""Autoregressive generation with a KV cache: greedy, temperature, top-k and top-p sampling.

    ids = generate(model, [[1, 42, 7]], max_new_tokens=50, temperature=0.8, top_p=0.95, seed=0)

The prompt is processed in one forward pass (prefill), then each new token costs one forward of
a single position against the cached keys and values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from fastllm.model.llama import Llama


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 means no top-k cut
    top_p: float = 1.0  # 1 means no nucleus cut

    def validate(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def next_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """Picks one token per row of logits (B, V) -> (B,)."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p (the best one always stays).
        drop_sorted = probs.cumsum(-1) - probs >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Llama, prompt: torch.Tensor | list, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, eos_id: int | Iterable[int] | None = None, seed: int | None = None,
             use_cache: bool = True) -> list[list[int]]:
    """Continues each prompt row (equal lengths) and returns the new tokens per row (stopping a
    row at eos_id, or at any of several stop ids, which is included)."""
    sampling = Sampling(temperature, top_k, top_p)
    sampling.validate()
    device = next(model.parameters()).device
    ids = torch.as_tensor(prompt, dtype=torch.long, device=device)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError("prompt must be a non-empty list of token ids (or a (B, T) tensor)")
    B, T = ids.shape
    if T >= model.config.max_seq_len:
        raise ValueError(f"prompt of {T} tokens leaves no room to generate within max_seq_len "
                         f"{model.config.max_seq_len}; shorten it")
    total = min(T + max_new_tokens, model.config.max_seq_len)
    stops = sorted({int(eos_id)} if isinstance(eos_id, Integral) else {int(i) for i in eos_id or ()})
    stop_ids = torch.tensor(stops, dtype=torch.long, device=device) if stops else None
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    cache = model.new_cache(B, total) if use_cache else None
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    step_input = ids
    try:
        for _ in range(total - T):
            logits = model(step_input, cache) if use_cache else model(ids)
            token = next_token(logits[:, -1], sampling, generator)  # (B,)
            for row in range(B):
                if not done[row]:
                    out[row].append(int(token[row]))
            if stop_ids is not None:
                done |= torch.isin(token, stop_ids)
            if bool(done.all()):
                break
            ids = torch.cat([ids, token[:, None]], dim=1)
            step_input = token[:, None]  # (B, 1): only the new position with a cache
    finally:
        model.train(was_training)
    return out


def generate_text(model: Llama, tokenizer, prompt: str, max_new_tokens: int, *, num_samples: int = 1,
                  temperature: float = 0.8, top_k: int = 0, top_p: float = 0.95, seed: int | None = None,
                  prefix_ids: Sequence[int] = (), stop_ids: Iterable[int] = ()) -> list[str]:
    """Samples `num_samples` continuations of `prompt` (text in, text out). An empty prompt starts
    from the beginning-of-text token, or the end-of-text separator the model was trained with.
    `prefix_ids` go before the prompt's tokens (a BOS the model's tokenizer adds); generation stops
    at the model's eos or any of `stop_ids` (end-of-turn tokens), which are not decoded."""
    ids = list(prefix_ids) + (tokenizer.encode(prompt, allowed_special="all") if prompt else [])
    if not ids:
        start = model.config.bos_id if model.config.bos_id is not None else model.config.eos_id
        if start is None:
            raise ValueError("an empty prompt needs a bos or eos token in the model config; give a prompt")
        ids = [start]
    stops = {model.config.eos_id, *stop_ids} - {None}
    rows = generate(model, [ids] * num_samples, max_new_tokens, temperature=temperature, top_k=top_k,
                    top_p=top_p, eos_id=stops, seed=seed)
    return [tokenizer.decode([t for t in row if t not in stops]) for row in rows]
