"""Perplexity and bits per byte of a causal LM on a token stream, with fixed-length windows.

Protocol (the one of Hugging Face's "Perplexity of fixed-length models" guide, made exact):
windows of `window` tokens start every `stride` tokens; each window scores the tokens it is the
first to reach, i.e. positions [max(previous end, begin + 1), end), with everything in the window
before them as context. stride == window gives non-overlapping windows (the first token of each
window is context only); a smaller stride gives every scored token at least window - stride
tokens of context (the sliding-window evaluation). Each token is scored at most once, so

    perplexity    = exp(total NLL / scored tokens)
    bits per byte = total NLL / ln 2 / (UTF-8 bytes of the scored tokens)

The bytes are those of the text: special tokens (such as the eos that joins documents in shards)
count 0, and special-token strings inside a text file are encoded as the text they are.

Streams (documents, files, shards) are evaluated independently and their sums combined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastllm.utils.errors import ConfigError, InputFormatError
from fastllm.utils.progress import progress


@dataclass
class PerplexityResult:
    nll: float  # total negative log-likelihood, nats
    tokens: int  # scored tokens
    bytes: int | None  # UTF-8 bytes of the scored tokens (None without token byte lengths)
    windows: int
    window: int
    stride: int

    @property
    def loss(self) -> float:
        return self.nll / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_byte(self) -> float | None:
        return self.nll / math.log(2) / self.bytes if self.bytes else None

    def as_dict(self) -> dict:
        return {"perplexity": self.perplexity, "loss": self.loss, "bits_per_byte": self.bits_per_byte,
                "tokens": self.tokens, "bytes": self.bytes, "windows": self.windows, "window": self.window,
                "stride": self.stride}


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, first scored position, end) of every window over a stream of n_tokens."""
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 2 and 1 <= stride <= window, got window={window}, stride={stride}")
    out, previous_end = [], 0
    for begin in range(0, max(n_tokens - 1, 0), stride):
        end = min(begin + window, n_tokens)
        first = max(previous_end, begin + 1)
        if first < end:
            out.append((begin, first, end))
        previous_end = end
        if end == n_tokens:
            break
    return out


@torch.no_grad()
def _score(model, ids: torch.Tensor, spans: list[tuple[int, int, int]], device) -> torch.Tensor:
    """Per-token NLL (float64) of every scored position of a batch of equal-length windows."""
    batch = torch.stack([ids[b:e] for b, _, e in spans]).to(device)  # (B, L)
    logits = model(batch[:, :-1])
    logits = getattr(logits, "logits", logits).float()  # ours returns a tensor, transformers an output
    nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").double().cpu()  # (B, L-1)
    return torch.cat([nll[i, first - begin - 1:] for i, (begin, first, _) in enumerate(spans)])


def stream_perplexity(model, streams: Iterable[np.ndarray | torch.Tensor | list[int]], *, window: int,
                      stride: int | None = None, batch_size: int = 4, token_bytes: np.ndarray | None = None,
                      show_progress: bool = True) -> PerplexityResult:
    """Perplexity of `model` (ours or a transformers causal LM) over token streams."""
    stride = stride or window
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, total_tokens, total_bytes, total_windows = 0.0, 0, 0, 0
    streams = [torch.as_tensor(np.asarray(s, dtype=np.int64)) for s in streams]
    plan = [(ids, windows(len(ids), window, stride)) for ids in streams]
    bar = progress(total=sum(len(w) for _, w in plan), desc="perplexity", unit="window") if show_progress else None
    try:
        for ids, spans in plan:
            # Batch windows of equal length (all but possibly the last one of a stream).
            groups: dict[int, list] = {}
            for span in spans:
                groups.setdefault(span[2] - span[0], []).append(span)
            for group in groups.values():
                for start in range(0, len(group), batch_size):
                    chunk = group[start:start + batch_size]
                    nll = _score(model, ids, chunk, device)
                    total_nll += float(nll.sum())
                    total_tokens += nll.numel()
                    if token_bytes is not None:
                        scored = torch.cat([ids[first:end] for _, first, end in chunk]).numpy()
                        total_bytes += int(token_bytes[scored].sum())
                    if bar is not None:
                        bar.update(len(chunk))
            total_windows += len(spans)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return PerplexityResult(total_nll, total_tokens, total_bytes if token_bytes is not None else None,
                            total_windows, window, stride)


def token_byte_lengths(tokenizer) -> np.ndarray:
    """Text bytes behind every token id of a fastllm Tokenizer: a model token's bytes, a non-special
    added token's UTF-8; 0 for special tokens (document separators, not text) and unused ids."""
    lengths = np.array([len(token or b"") for token in tokenizer.tokens] + [0] * tokenizer.vocab_size, dtype=np.int64)
    for added in tokenizer.added_tokens:
        lengths[added.id] = 0 if added.special else len(added.content.encode("utf-8"))
    return lengths[:tokenizer.vocab_size]


def unigram_baseline(train_streams: Iterable[np.ndarray], vocab_size: int, eval_streams: Iterable[np.ndarray], *,
                     window: int, stride: int | None = None, token_bytes: np.ndarray | None = None) -> PerplexityResult:
    """The same protocol scored by a unigram model (add-one smoothed training token frequencies):
    the floor any model that uses context should beat."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for stream in train_streams:
        counts += np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    neg_log_p = -np.log(counts / counts.sum())
    nll, tokens, n_bytes, n_windows = 0.0, 0, 0, 0
    for stream in eval_streams:
        stream = np.asarray(stream, dtype=np.int64)
        spans = windows(len(stream), window, stride or window)
        scored = np.concatenate([stream[first:end] for _, first, end in spans]) if spans else stream[:0]
        nll += float(neg_log_p[scored].sum())
        tokens += len(scored)
        n_bytes += int(token_bytes[scored].sum()) if token_bytes is not None else 0
        n_windows += len(spans)
    return PerplexityResult(nll, tokens, n_bytes if token_bytes is not None else None, n_windows, window,
                            stride or window)


def read_text_streams(files: Iterable[str | Path], tokenizer, max_tokens: int = 0) -> tuple[list[np.ndarray], int]:
    """Each text file tokenized as one stream (special-token strings as plain text, like fastllm
    prepare does); (streams, total UTF-8 bytes read)."""
    streams, n_bytes = [], 0
    for file in map(Path, files):
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputFormatError(f"{file}: text file not found") from None
        except UnicodeDecodeError as exc:
            raise InputFormatError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise InputFormatError(f"{file}: cannot read ({exc.strerror or exc})") from None
        ids = np.asarray(tokenizer.encode_ordinary(text), dtype=np.int64)
        if len(ids) < 2:
            raise InputFormatError(f"{file}: fewer than 2 tokens of text; nothing to evaluate")
        streams.append(ids)
        n_bytes += len(text.encode("utf-8"))
    return cap_tokens(streams, max_tokens), n_bytes


def read_shard_streams(directory: str | Path, split: str, *, model_vocab: int, tokenizer_hash: str | None,
                       max_tokens: int = 0) -> list[np.ndarray]:
    """Each shard of a split as one stream, checked against the model's vocabulary and tokenizer."""
    from fastllm.train.data import check_token_ids, open_shards

    shards = open_shards(directory)
    index = Path(directory) / "index.json"
    if tokenizer_hash is not None and shards.tokenizer_hash != tokenizer_hash:
        raise ConfigError(f"{index}: the shards were tokenized with {shards.tokenizer_hash[:12]}, the model's "
                          f"tokenizer is {tokenizer_hash[:12]}; evaluate shards made with the model's tokenizer")
    if shards.vocab_size > model_vocab:
        raise ConfigError(f"{index}: vocab_size {shards.vocab_size} exceeds the model's {model_vocab}")
    arrays = [a for a in shards.split(split) if len(a) >= 2]
    if not arrays:
        raise InputFormatError(f"{index}: split {split!r} is empty or missing; nothing to evaluate")
    streams = [np.asarray(a, dtype=np.int64) for a in cap_tokens(arrays, max_tokens)]  # only what is evaluated
    for stream in streams:
        check_token_ids(stream, shards.vocab_size, f"{directory} ({split} split)")
    return streams


def cap_tokens(streams: list[np.ndarray], max_tokens: int) -> list[np.ndarray]:
    """The streams cut to max_tokens tokens in all (0: all of them)."""
    if max_tokens <= 0:
        return streams
    out, left = [], max_tokens
    for stream in streams:
        if left < 2:
            break
        out.append(stream[:left])
        left -= len(out[-1])
    return out
