"""Decontamination: documents sharing any n-gram (13 alnum words by default, lowercased, punctuation
ignored) with a user-given evaluation set are dropped, or have the shared spans cut out. Matching
runs in C++ (csrc/cpu/minhash_ngrams.cpp) against a sorted table of the evaluation n-gram hashes,
each tagged with a bitmask of the sets it occurs in, so the report says which set matched how
many documents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from fastllm import _ext
from fastllm.data.minhash import default_threads, unit_mode
from fastllm.utils.errors import ConfigError


@dataclass
class DecontamConfig:
    eval_sets: dict[str, str] = field(default_factory=dict, metadata={
        "help": "name -> evaluation text file or glob (.txt: one text per blank-line block; .jsonl: the "
                "'text' field)"})
    ngram: int = field(default=13, metadata={"help": "shared n-gram length in words"})
    mode: Literal["drop", "redact"] = field(default="drop", metadata={"help": "drop the document or cut "
                                                                             "the shared spans"})
    placeholder: str = field(default="", metadata={"help": "text put where a span is cut (redact mode)"})

    def validate(self) -> None:
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if len(self.eval_sets) > 64:
            raise ValueError("at most 64 evaluation sets")


_MODE = unit_mode("alnum")


class EvalIndex:
    def __init__(self, names: list[str], hashes: np.ndarray, masks: np.ndarray, ngram: int):
        self.names, self.hashes, self.masks, self.ngram = names, hashes, masks, ngram

    @classmethod
    def from_texts(cls, eval_sets: dict[str, Iterable[str]], ngram: int = 13) -> EvalIndex:
        names = list(eval_sets)
        all_hashes, all_masks = [], []
        for bit, name in enumerate(names):
            texts = list(eval_sets[name])
            flat, _ = _ext.cpu().minhash.ngram_hashes(texts, _MODE, ngram)
            hashes = np.unique(np.frombuffer(flat, dtype=np.uint64))
            all_hashes.append(hashes)
            all_masks.append(np.full(hashes.shape, 1 << bit, dtype=np.uint64))
        if not all_hashes:
            return cls(names, np.zeros(0, np.uint64), np.zeros(0, np.uint64), ngram)
        hashes = np.concatenate(all_hashes)
        masks = np.concatenate(all_masks)
        order = np.argsort(hashes, kind="stable")
        hashes, masks = hashes[order], masks[order]
        unique, start = np.unique(hashes, return_index=True)
        merged = np.bitwise_or.reduceat(masks, start) if len(hashes) else masks
        return cls(names, np.ascontiguousarray(unique), np.ascontiguousarray(merged), ngram)

    @classmethod
    def from_config(cls, config: DecontamConfig) -> EvalIndex:
        from fastllm.data.readers import ReaderOptions, expand_paths, read_texts

        sets = {}
        for name, pattern in config.eval_sets.items():
            files = expand_paths([pattern], where=f"decontam.eval_sets.{name}")
            sets[name] = [t for f in files for t in read_texts(f, ReaderOptions(txt_mode="block"))]
            if not sets[name]:
                raise ConfigError(f"decontam.eval_sets.{name}: {pattern} holds no text")
        return cls.from_texts(sets, config.ngram)

    def __len__(self) -> int:
        return int(self.hashes.shape[0])

    def match(self, texts: Sequence[str], num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(counts, masks): shared n-grams per text and the bitmask of the sets they come from."""
        texts = list(texts)
        counts = np.zeros(len(texts), dtype=np.int64)
        masks = np.zeros(len(texts), dtype=np.uint64)
        if texts and len(self):
            _ext.cpu().minhash.ngram_match(texts, self.hashes.ctypes.data, self.masks.ctypes.data, len(self),
                                           _MODE, self.ngram, counts.ctypes.data, masks.ctypes.data,
                                           num_threads or default_threads())
        return counts, masks

    def set_names(self, mask: int) -> list[str]:
        return [name for bit, name in enumerate(self.names) if mask >> bit & 1]

    def redact(self, text: str, placeholder: str = "") -> str:
        """The text with every span covered by a shared n-gram replaced by `placeholder`."""
        spans = _ext.cpu().minhash.ngram_spans([text], self.hashes.ctypes.data, self.masks.ctypes.data,
                                               len(self), _MODE, self.ngram)
        if not spans:
            return text
        raw = text.encode("utf-8")
        pieces, pos = [], 0
        for begin, end in spans:
            pieces += [raw[pos:begin], placeholder.encode("utf-8")]
            pos = end
        pieces.append(raw[pos:])
        return b"".join(pieces).decode("utf-8")


def load_eval_index(config: DecontamConfig) -> EvalIndex | None:
    return EvalIndex.from_config(config) if config.eval_sets else None

