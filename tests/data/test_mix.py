"""Mixing: the document table over tokenized parts, target shares, and the shards it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastllm.data.mix import DocTable, write_mix
from fastllm.data.shards import ShardSet
from fastllm.data.tokens import TRAIN, VAL


def _write_part(tokens_dir: Path, part: str, docs: list[list[int]], splits: list[int]) -> None:
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    np.save(tokens_dir / f"{part}.lengths.npy", lengths)
    np.save(tokens_dir / f"{part}.splits.npy", np.array(splits, dtype=np.int8))
    flat = np.concatenate([np.array(d, np.uint32) for d in docs]) if docs else np.zeros(0, np.uint32)
    (tokens_dir / f"{part}.tokens.bin").write_bytes(flat.tobytes())


def test_part_with_no_kept_documents_does_not_shift_later_parts(tmp_path):
    # Dedup can drop every document of a part (e.g. a copied file); the parts after it must still
    # map each document to its own tokens.
    a = [[1, 2], [3], [4, 5, 6]]
    b = [[7, 8, 9], [10, 11], [12]]
    _write_part(tmp_path, "part-00000", a, [TRAIN] * 3)
    _write_part(tmp_path, "part-00001", [], [])
    _write_part(tmp_path, "part-00002", b, [TRAIN, VAL, TRAIN])
    parts = [{"part": "part-00000", "source": "x"}, {"part": "part-00001", "source": "x"},
             {"part": "part-00002", "source": "y"}]
    table = DocTable(parts, tmp_path)
    assert len(table.offset) == len(table.length) == len(table.part) == 6
    assert [table.tokens(i).tolist() for i in range(6)] == a + b

    out = tmp_path / "shards"
    report = write_mix(table, out, weights=None, total_tokens=0, seed=3, vocab_size=100, tokenizer_hash="h",
                       eos_id=99, max_shard_tokens=1000)
    shards = ShardSet.open(out)
    written = []
    for split in ("train", "val"):
        for tokens, offsets in zip(shards.split(split), shards.doc_offsets(split)):
            written += [tokens[offsets[i]:offsets[i + 1] - 1].tolist() for i in range(len(offsets) - 1)]
    assert sorted(written) == sorted(a + b)  # natural mix: every document exactly once
    assert report["y"]["val_tokens"] == 2 and report["x"]["mixed_train_documents"] == 3
