"""Training windows from memory-mapped token shards (the fastllm-shards-v1 format).

The windows of optimizer step s are a pure function of (seed, s): step s draws `batch_size`
window starts from a generator seeded with [seed, s], and process r of W takes rows
[r * B/W, (r+1) * B/W) of them, in micro-batches. Nothing else is stateful, so resuming at step
s (on the same or, for the data, any world size) replays exactly the same windows, and the
union of windows per step does not depend on the number of processes.

A window never crosses a shard boundary; inside a shard it may span documents (they are joined
with eos_id), which is the standard way of packing pretraining data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastllm.utils.errors import InputFormatError


@dataclass
class Shards:
    """An opened shard directory: per split, the token arrays (np.memmap) plus the index fields."""

    path: Path
    vocab_size: int
    tokenizer_hash: str
    eos_id: int | None
    splits: dict[str, list[np.ndarray]]

    def split(self, name: str) -> list[np.ndarray]:
        return self.splits.get(name, [])

    def num_tokens(self, name: str) -> int:
        return sum(len(a) for a in self.split(name))


def open_shards(path: str | Path) -> Shards:
    """Opens a shard directory with fastllm.data's ShardSet (which validates the index and sizes)."""
    from fastllm.data.shards import ShardSet

    shard_set = ShardSet.open(path)
    splits = {name: list(shard_set.split(name)) for name in shard_set.splits()}
    return Shards(Path(path), int(shard_set.vocab_size), str(shard_set.tokenizer_hash), shard_set.eos_id, splits)


def check_token_ids(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    """A token id outside [0, vocab_size) means a corrupt shard (the index vouches for the range):
    a one-line error here instead of an IndexError inside the embedding."""
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise InputFormatError(f"{where}: token id {int(tokens.max())} is outside the vocabulary ({vocab_size}); "
                               "the shards are corrupt: re-run fastllm prepare")


class WindowSampler:
    """Random (seq_len + 1)-token windows from a split, deterministic by (seed, step); with
    vocab_size, every window's ids are checked against it."""

    def __init__(self, arrays: list[np.ndarray], seq_len: int, *, seed: int, where: str, vocab_size: int | None = None):
        self.arrays = [a for a in arrays if len(a) > seq_len]
        self.seq_len = seq_len
        self.seed = seed
        self.where, self.vocab_size = where, vocab_size
        starts = np.array([len(a) - seq_len for a in self.arrays], dtype=np.int64)  # valid starts per shard
        self.cumulative = np.cumsum(starts)
        if not self.arrays:
            raise InputFormatError(f"{where}: no shard holds more than seq_len={seq_len} tokens; "
                                   "prepare more data or lower data.seq_len")

    def batch(self, step: int, global_batch: int, rows: slice) -> torch.Tensor:
        """Rows `rows` of step `step`'s global batch: int64 (len(rows), seq_len + 1)."""
        rng = np.random.Generator(np.random.PCG64([self.seed, step]))
        picks = rng.integers(0, int(self.cumulative[-1]), size=global_batch)[rows]
        shard_of = np.searchsorted(self.cumulative, picks, side="right")
        out = np.empty((len(picks), self.seq_len + 1), dtype=np.int64)
        for i, (pick, shard) in enumerate(zip(picks, shard_of)):
            start = pick - (self.cumulative[shard - 1] if shard else 0)
            out[i] = self.arrays[shard][start:start + self.seq_len + 1]
        if self.vocab_size is not None:
            check_token_ids(out, self.vocab_size, self.where)
        return torch.from_numpy(out)


def eval_windows(arrays: list[np.ndarray], seq_len: int, max_tokens: int) -> torch.Tensor:
    """Consecutive non-overlapping (seq_len + 1)-token windows from the start of each validation
    shard, up to max_tokens predicted tokens: (N, seq_len + 1) int64, the same set every time."""
    windows: list[np.ndarray] = []
    limit = max(1, max_tokens // seq_len)
    for array in arrays:
        for start in range(0, len(array) - seq_len, seq_len):
            if len(windows) == limit:
                break
            windows.append(np.asarray(array[start:start + seq_len + 1], dtype=np.int64))
    if not windows:
        return torch.empty(0, seq_len + 1, dtype=torch.long)
    return torch.from_numpy(np.stack(windows))
