"""Token shards for trainer tests, written in the fastllm-shards-v1 format (index.json + .bin)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def markov_tokens(n: int, vocab: int, seed: int) -> np.ndarray:
    """A learnable stream: mostly next = (3 * prev + 1) % vocab, sometimes a random token."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    out[0] = 1
    noise = rng.random(n) < 0.15
    random_tokens = rng.integers(0, vocab, n)
    for i in range(1, n):
        out[i] = random_tokens[i] if noise[i] else (3 * out[i - 1] + 1) % vocab
    return out


def write_shards(root: Path, *, vocab: int = 64, train: tuple[int, ...] = (6000, 4000), val: tuple[int, ...] = (1500,),
                 tokenizer_hash: str = "test-tokenizer", seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, sizes in (("train", train), ("val", val)):
        entries = []
        for i, size in enumerate(sizes):
            name = f"{split}-{i:05d}.bin"
            markov_tokens(size, vocab, seed + 100 * i + (7 if split == "val" else 0)).astype("<u2").tofile(root / name)
            entries.append({"file": name, "tokens": size, "documents": 1})
        splits[split] = entries
    index = {"format": "fastllm-shards-v1", "dtype": "uint16", "vocab_size": vocab, "tokenizer_hash": tokenizer_hash,
             "eos_id": vocab - 1, "splits": splits, "tokens_per_source": {"markov": sum(train) + sum(val)}}
    (root / "index.json").write_text(json.dumps(index))
    return root


@pytest.fixture
def shards(tmp_path) -> Path:
    return write_shards(tmp_path / "shards")
