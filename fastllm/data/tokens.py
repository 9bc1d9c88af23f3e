"""Tokenization: load the configured tokenizer (or train one on the cleaned training split), and
the tokenize stage, one task per cleaned part: the documents dedup kept, encoded in batches, each
assigned to train or val, written as a flat uint32 token file plus per-document lengths and splits."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastllm.data.config import TRAIN_SPECIAL_TOKENS, SplitConfig
from fastllm.data.markers import mark_part
from fastllm.utils.atomic import atomic_write
from fastllm.utils.errors import FastLLMError

TRAIN, VAL = 0, 1


def load_tokenizer(path: str | Path):
    """fastllm.tokenizer.Tokenizer.from_file (the contract with the tokenizer package)."""
    from fastllm.tokenizer import Tokenizer

    if not Path(path).is_file():
        raise FastLLMError(f"{path}: tokenizer file not found; set tokenizer.path or tokenizer.train_vocab_size")
    return Tokenizer.from_file(path)


def train_tokenizer(texts: Iterator[str], vocab_size: int, min_frequency: int, pattern: str, threads: int):
    from fastllm.tokenizer import train_bpe

    # An iterator is a stream of documents to train_bpe: a document that looks like a path
    # ("readme.txt", a URL) stays text, and the texts are counted batch by batch, never all held.
    return train_bpe(iter(texts), vocab_size, min_frequency=min_frequency,
                     special_tokens=TRAIN_SPECIAL_TOKENS, pattern=pattern, num_threads=threads)


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(path: str, expected_hash: str):
    # Keyed by the hash too: one process may run prepare again with another tokenizer at the same path.
    tokenizer = load_tokenizer(path)
    if tokenizer.hash() != expected_hash:
        raise FastLLMError(f"{path}: changed while the data was being prepared; run `fastllm prepare` again")
    return tokenizer


def split_of(doc_id: str, file: str, config: SplitConfig, seed: int) -> int:
    """TRAIN or VAL, a pure function of the document (or its file), the split settings and the seed."""
    if config.val_files:
        return VAL if any(fnmatch.fnmatch(file, p) for p in config.val_files) else TRAIN
    if config.val_fraction <= 0:
        return TRAIN
    key = file if config.group_by == "file" else doc_id
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")
    return VAL if h / 2**64 < config.val_fraction else TRAIN


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def tokenize_task(task: dict[str, Any]) -> dict[str, Any]:
    """Executor entry point: tokenizes the kept documents of one cleaned part."""
    import pyarrow.parquet as pq

    tokenizer = _cached_tokenizer(task["tokenizer"], task["tokenizer_hash"])
    split_config = SplitConfig(**task["split"])
    table = pq.read_table(task["input"], columns=["id", "text", "file"])
    keep = np.load(task["keep"], allow_pickle=False)
    rows = np.flatnonzero(keep)
    ids, texts, files = (table.column(c).to_pylist() for c in ("id", "text", "file"))
    out = Path(task["stage_dir"])
    lengths = np.zeros(len(rows), dtype=np.int64)
    splits = np.array([split_of(ids[r], files[r], split_config, task["seed"]) for r in rows], dtype=np.int8)
    with atomic_write(out / f"{task['part']}.tokens.bin", "wb") as handle:
        for start in range(0, len(rows), task["batch_docs"]):
            batch = [texts[r] for r in rows[start:start + task["batch_docs"]]]
            # Special-token text inside a document (e.g. a page quoting "<|end_of_text|>") is data,
            # not a control token: encode it as plain text rather than refusing the document.
            tokens, offsets = tokenizer.encode_batch_flat(batch, num_threads=task["threads"],
                                                          disallowed_special=())
            lengths[start:start + len(batch)] = np.diff(offsets)
            handle.write(np.ascontiguousarray(tokens, dtype=np.uint32).tobytes())
    _save(out / f"{task['part']}.lengths.npy", lengths)
    _save(out / f"{task['part']}.splits.npy", splits)
    result = {"part": task["part"], "source": task["source"], "docs": int(len(rows)),
              "tokens": {"train": int(lengths[splits == TRAIN].sum()), "val": int(lengths[splits == VAL].sum())},
              "docs_per_split": {"train": int((splits == TRAIN).sum()), "val": int((splits == VAL).sum())}}
    mark_part(task["stage_dir"], task["hash"], task["part"], result)
    return result
