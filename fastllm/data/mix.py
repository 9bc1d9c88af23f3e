"""Mixing: per-source target shares of the training tokens (upsampling by repetition, downsampling
by a seeded selection), a seeded shuffle, and the train/val shards. Validation keeps every held-out
document once, in a seeded order; weights apply to training only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastllm.data.shards import write_shards
from fastllm.data.tokens import TRAIN, VAL


class DocTable:
    """Every tokenized document: its part, byte offset (in tokens) in the part file, length, split, source."""

    def __init__(self, parts: list[dict[str, Any]], tokens_dir: Path):
        self.tokens_dir = tokens_dir
        self.part_names = [p["part"] for p in parts]
        self.source_names = sorted({p["source"] for p in parts})
        part_idx, offsets, lengths, splits, sources = [], [], [], [], []
        for i, p in enumerate(parts):
            length = np.load(tokens_dir / f"{p['part']}.lengths.npy", allow_pickle=False)
            part_idx.append(np.full(len(length), i, dtype=np.int32))
            offsets.append((np.cumsum(length) - length).astype(np.int64))  # exclusive prefix sum; [] stays []
            lengths.append(length)
            splits.append(np.load(tokens_dir / f"{p['part']}.splits.npy", allow_pickle=False))
            sources.append(np.full(len(length), self.source_names.index(p["source"]), dtype=np.int32))
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)
        self.part, self.offset = cat(part_idx, np.int32), cat(offsets, np.int64)
        self.length, self.split = cat(lengths, np.int64), cat(splits, np.int8)
        self.source = cat(sources, np.int32)
        self._maps: dict[int, np.memmap] = {}

    def tokens(self, i: int) -> np.ndarray:
        p = int(self.part[i])
        if p not in self._maps:
            path = self.tokens_dir / f"{self.part_names[p]}.tokens.bin"
            self._maps[p] = (np.memmap(path, dtype=np.uint32, mode="r") if path.stat().st_size
                             else np.zeros(0, np.uint32))
        return self._maps[p][self.offset[i]:self.offset[i] + self.length[i]]


def plan_train(table: DocTable, weights: dict[str, float] | None, total_tokens: int, seed: int) -> np.ndarray:
    """Document indices of the training mix (repeats allowed), shuffled with the seed."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train = table.split == TRAIN
    chosen = []
    natural = {s: int(table.length[train & (table.source == k)].sum()) for k, s in enumerate(table.source_names)}
    total = total_tokens or sum(natural.values())
    weight_sum = sum(weights.values()) if weights else 0.0
    for k, name in enumerate(table.source_names):
        docs = np.flatnonzero(train & (table.source == k))
        if not len(docs):
            continue
        target = (weights[name] / weight_sum * total) if weights else natural[name] * total / max(1, sum(natural.values()))
        chosen.append(_select(docs, table.length[docs], int(round(target)), rng))
    order = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    return order[rng.permutation(len(order))]


def _select(docs: np.ndarray, lengths: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Whole repeats of the source while they fit, then a seeded selection for the remainder:
    documents in a random order, each taken if it brings the total closer to the target."""
    have = int(lengths.sum())
    if have == 0 or target <= 0:
        return np.zeros(0, np.int64)
    repeats = target // have
    picked = [np.tile(docs, repeats)] if repeats else []
    remaining = target - repeats * have
    taken = []
    for j in rng.permutation(len(docs)):
        if remaining <= 0:
            break
        if lengths[j] <= remaining or lengths[j] - remaining < remaining:
            taken.append(docs[j])
            remaining -= int(lengths[j])
    picked.append(np.array(taken, dtype=np.int64))
    return np.concatenate(picked)


def write_mix(table: DocTable, out_dir: Path, *, weights: dict[str, float] | None, total_tokens: int, seed: int,
              vocab_size: int, tokenizer_hash: str, eos_id: int | None, max_shard_tokens: int) -> dict[str, Any]:
    train_order = plan_train(table, weights, total_tokens, seed)
    val_docs = np.flatnonzero(table.split == VAL)
    val_order = val_docs[np.random.Generator(np.random.PCG64(seed + 1)).permutation(len(val_docs))]

    def documents(order: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        for i in order:
            yield table.source_names[table.source[i]], table.tokens(int(i))

    write_shards(out_dir, {"train": documents(train_order), "val": documents(val_order)}, vocab_size=vocab_size,
                 tokenizer_hash=tokenizer_hash, eos_id=eos_id, max_shard_tokens=max_shard_tokens)
    report = {}
    for k, name in enumerate(table.source_names):
        in_train = table.source[train_order] == k
        report[name] = {"available_train_tokens": int(table.length[(table.split == TRAIN) & (table.source == k)].sum()),
                        "mixed_train_tokens": int(table.length[train_order][in_train].sum()),
                        "mixed_train_documents": int(in_train.sum()),
                        "val_tokens": int(table.length[val_order][table.source[val_order] == k].sum())}
    total = sum(r["mixed_train_tokens"] for r in report.values()) or 1
    for name, r in report.items():
        r["train_share"] = round(r["mixed_train_tokens"] / total, 4)
        r["target_share"] = round(weights[name] / sum(weights.values()), 4) if weights else None
    return report
