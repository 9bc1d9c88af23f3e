"""Token shards, the data -> train format (DESIGN.md section 4).

A directory of flat little-endian `uint16` (vocab <= 65536) or `uint32` token files
`<split>-NNNNN.bin`, per shard an int64 `<split>-NNNNN.idx.npy` of document start offsets plus the
end (documents + 1 entries; document i is tokens[off[i]:off[i + 1]], its trailing eos_id
included), and `index.json`, written last:

    {"format": "fastllm-shards-v1", "dtype": "uint16", "vocab_size": 4096, "tokenizer_hash": "...",
     "eos_id": 0, "splits": {"train": [{"file": "train-00000.bin", "tokens": 123, "documents": 4,
     "doc_offsets_file": "train-00000.idx.npy"}], "val": [...]}, "tokens_per_source": {"web": 100}}

Every document is followed by eos_id (when the tokenizer has one). Read with ShardSet.open(dir).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastllm.utils.atomic import atomic_write, write_json
from fastllm.utils.errors import InputFormatError

FORMAT = "fastllm-shards-v1"
INDEX = "index.json"


def shard_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


class _ShardWriter:
    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, eos_id: int | None, max_tokens: int):
        self.out_dir, self.split, self.dtype, self.eos_id, self.max_tokens = out_dir, split, dtype, eos_id, max_tokens
        self.entries: list[dict[str, Any]] = []
        self.chunks: list[np.ndarray] = []
        self.offsets: list[int] = [0]

    def add(self, tokens: np.ndarray) -> int:
        if self.eos_id is not None:
            tokens = np.concatenate([tokens, np.array([self.eos_id], dtype=tokens.dtype)])
        if self.offsets[-1] and self.offsets[-1] + len(tokens) > self.max_tokens:
            self.flush()
        self.chunks.append(tokens.astype(self.dtype, copy=False))
        self.offsets.append(self.offsets[-1] + len(tokens))
        return len(tokens)

    def flush(self) -> None:
        if len(self.offsets) == 1:
            return
        name = f"{self.split}-{len(self.entries):05d}"
        with atomic_write(self.out_dir / f"{name}.bin", "wb") as handle:
            for chunk in self.chunks:
                handle.write(chunk.tobytes())
        with atomic_write(self.out_dir / f"{name}.idx.npy", "wb") as handle:
            np.save(handle, np.array(self.offsets, dtype=np.int64), allow_pickle=False)
        self.entries.append({"file": f"{name}.bin", "tokens": self.offsets[-1], "documents": len(self.offsets) - 1,
                             "doc_offsets_file": f"{name}.idx.npy"})
        self.chunks, self.offsets = [], [0]


def write_shards(out_dir: str | Path, splits: Mapping[str, Iterable[tuple[str, Sequence[int] | np.ndarray]]], *,
                 vocab_size: int, tokenizer_hash: str, eos_id: int | None,
                 max_shard_tokens: int = 1 << 27) -> Path:
    """Writes the shards of every split from (source, token ids) documents, then index.json.
    Shard files from an earlier run that the new index does not name are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # New shards reuse the old names: drop the old index first, so a crash in between leaves no
    # index (a clear "run prepare" error) rather than an old index over a mix of old and new files.
    (out_dir / INDEX).unlink(missing_ok=True)
    dtype = shard_dtype(vocab_size)
    index: dict[str, Any] = {"format": FORMAT, "dtype": "uint16" if dtype.itemsize == 2 else "uint32",
                             "vocab_size": int(vocab_size),
                             "tokenizer_hash": tokenizer_hash, "eos_id": eos_id, "splits": {},
                             "tokens_per_source": {}}
    per_source: dict[str, int] = {}
    for split, documents in splits.items():
        writer = _ShardWriter(out_dir, split, dtype, eos_id, max_shard_tokens)
        for source, tokens in documents:
            tokens = np.asarray(tokens)
            if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
                raise ValueError(f"write_shards: token id outside [0, {vocab_size}) in a {source} document")
            per_source[source] = per_source.get(source, 0) + writer.add(tokens)
        writer.flush()
        index["splits"][split] = writer.entries
    index["tokens_per_source"] = dict(sorted(per_source.items()))
    write_json(out_dir / INDEX, index)
    named = {e[k] for entries in index["splits"].values() for e in entries for k in ("file", "doc_offsets_file")}
    for stale in [*out_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].bin"), *out_dir.glob("*-[0-9][0-9][0-9][0-9][0-9].idx.npy")]:
        if stale.name not in named:
            stale.unlink()
    return out_dir


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_index(path: Path, index: dict[str, Any]) -> None:
    """Every field ShardSet reads, with the right type; files named as plain names in the directory."""
    if not _is_count(index.get("vocab_size")) or not index["vocab_size"]:
        raise InputFormatError(f"{path}: vocab_size must be a positive integer, got {index.get('vocab_size')!r}")
    if index.get("eos_id") is not None and not _is_count(index["eos_id"]):
        raise InputFormatError(f"{path}: eos_id must be a non-negative integer or null, got {index['eos_id']!r}")
    splits = index.get("splits")
    if not isinstance(splits, dict) or not all(isinstance(e, list) for e in splits.values()):
        raise InputFormatError(f"{path}: splits must map split names to lists of shard entries")
    for split, entries in splits.items():
        for i, entry in enumerate(entries):
            where = f"{path}: splits.{split}[{i}]"
            if not isinstance(entry, dict):
                raise InputFormatError(f"{where}: expected an object")
            for key in ("file", "doc_offsets_file"):  # the second is optional (read only by doc_offsets)
                name = entry.get(key)
                if key not in entry and key == "doc_offsets_file":
                    continue
                if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
                    raise InputFormatError(f"{where}: {key} must be a file name in the shard directory, got {name!r}")
            for key in ("tokens", "documents"):
                if not _is_count(entry.get(key)):
                    raise InputFormatError(f"{where}: {key} must be a non-negative integer, got {entry.get(key)!r}")


class ShardSet:
    """Memory-mapped view of a shard directory."""

    def __init__(self, directory: Path, index: dict[str, Any]):
        self.directory, self.index = directory, index

    @classmethod
    def open(cls, directory: str | Path) -> ShardSet:
        directory = Path(directory)
        path = directory / INDEX
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputFormatError(f"{path}: no shard index; run `fastllm prepare` first") from None
        except (OSError, ValueError) as exc:
            raise InputFormatError(f"{path}: unreadable shard index ({exc})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise InputFormatError(f"{path}: not a {FORMAT} index")
        if index.get("dtype") not in ("uint16", "uint32"):
            raise InputFormatError(f"{path}: dtype must be uint16 or uint32, got {index.get('dtype')!r}")
        _check_index(path, index)
        shards = cls(directory, index)
        for split, entries in index["splits"].items():
            for entry in entries:
                file = directory / entry["file"]
                expected = entry["tokens"] * shards.dtype.itemsize
                if not file.is_file() or file.stat().st_size != expected:
                    raise InputFormatError(f"{file}: missing or not {expected} bytes as the index says ({split})")
        return shards

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<u2") if self.index["dtype"] == "uint16" else np.dtype("<u4")

    @property
    def vocab_size(self) -> int:
        return int(self.index["vocab_size"])

    @property
    def tokenizer_hash(self) -> str:
        return self.index["tokenizer_hash"]

    @property
    def eos_id(self) -> int | None:
        return self.index["eos_id"]

    @property
    def tokens_per_source(self) -> dict[str, int]:
        return dict(self.index.get("tokens_per_source", {}))

    def splits(self) -> list[str]:
        return list(self.index["splits"])

    def _entries(self, split: str) -> list[dict[str, Any]]:
        if split not in self.index["splits"]:
            raise InputFormatError(f"{self.directory}: no split {split!r} in index.json; it has {self.splits()}")
        return self.index["splits"][split]

    def split(self, split: str) -> list[np.memmap]:
        return [np.memmap(self.directory / e["file"], dtype=self.dtype, mode="r", shape=(e["tokens"],))
                if e["tokens"] else np.zeros(0, self.dtype) for e in self._entries(split)]

    def num_tokens(self, split: str) -> int:
        return sum(int(e["tokens"]) for e in self._entries(split))

    def num_documents(self, split: str) -> int:
        return sum(int(e["documents"]) for e in self._entries(split))

    def doc_offsets(self, split: str) -> list[np.ndarray]:
        entries = self._entries(split)
        if any("doc_offsets_file" not in e for e in entries):
            raise InputFormatError(f"{self.directory / INDEX}: split {split!r} has no document offsets "
                                   "(doc_offsets_file); rewrite the shards with `fastllm prepare`")
        return [np.load(self.directory / e["doc_offsets_file"], allow_pickle=False) for e in entries]
