"""Token shards: write_shards -> ShardSet round trip, dtype choice, boundaries, bad indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastllm.data.shards import ShardSet, write_shards
from fastllm.utils.errors import InputFormatError


def _docs(rng, n, vocab, source):
    return [(source, rng.integers(0, vocab - 1, size=rng.integers(1, 50))) for _ in range(n)]


@pytest.mark.parametrize("vocab", [1000, 70000])
def test_round_trip_with_boundaries(tmp_path, vocab):
    rng = np.random.default_rng(0)
    train = _docs(rng, 40, vocab, "a") + _docs(rng, 10, vocab, "b")
    val = _docs(rng, 5, vocab, "a")
    write_shards(tmp_path, {"train": iter(train), "val": iter(val)}, vocab_size=vocab, tokenizer_hash="abc",
                 eos_id=vocab - 1, max_shard_tokens=300)
    shards = ShardSet.open(tmp_path)
    assert shards.dtype == (np.uint16 if vocab <= 65536 else np.uint32)
    assert shards.vocab_size == vocab and shards.tokenizer_hash == "abc" and shards.eos_id == vocab - 1
    assert len(shards.split("train")) > 1
    got = []
    for tokens, offsets in zip(shards.split("train"), shards.doc_offsets("train")):
        assert offsets[-1] == len(tokens)
        got += [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    assert len(got) == len(train) == shards.num_documents("train")
    for (_, want), doc in zip(train, got):
        assert doc[-1] == vocab - 1 and np.array_equal(doc[:-1], want)
    assert shards.num_tokens("train") == sum(len(t) + 1 for _, t in train)
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index) == {"format", "dtype", "vocab_size", "tokenizer_hash", "eos_id", "splits", "tokens_per_source"}
    assert index["tokens_per_source"]["b"] == sum(len(t) + 1 for s, t in train if s == "b")
    with pytest.raises(InputFormatError, match="no split 'test' in index.json"):
        shards.split("test")


def test_rewrite_removes_stale_shards_and_bad_inputs(tmp_path):
    rng = np.random.default_rng(1)
    write_shards(tmp_path, {"train": _docs(rng, 30, 500, "a")}, vocab_size=500, tokenizer_hash="h", eos_id=None,
                 max_shard_tokens=100)
    assert len(list(tmp_path.glob("train-*.bin"))) > 1
    write_shards(tmp_path, {"train": _docs(rng, 2, 500, "a")}, vocab_size=500, tokenizer_hash="h", eos_id=None)
    assert [p.name for p in tmp_path.glob("train-*.bin")] == ["train-00000.bin"]
    with pytest.raises(ValueError, match="outside"):
        write_shards(tmp_path / "x", {"train": [("a", [5, 600])]}, vocab_size=500, tokenizer_hash="h", eos_id=None)
    (tmp_path / "train-00000.bin").write_bytes(b"\0")
    with pytest.raises(InputFormatError, match="not .* bytes"):
        ShardSet.open(tmp_path)
    with pytest.raises(InputFormatError, match="no shard index"):
        ShardSet.open(tmp_path / "missing")


@pytest.mark.parametrize("edit, message", [
    (lambda i: i.update(splits=[1]), "splits must map"),
    (lambda i: i["splits"]["train"].append("x"), r"splits.train\[1\]: expected an object"),
    (lambda i: i["splits"]["train"][0].update(file="../elsewhere.bin"), "file must be a file name"),
    (lambda i: i["splits"]["train"][0].update(doc_offsets_file="/etc/passwd"), "doc_offsets_file must be"),
    (lambda i: i["splits"]["train"][0].pop("tokens"), "tokens must be a non-negative integer"),
    (lambda i: i["splits"]["train"][0].update(documents=-1), "documents must be"),
    (lambda i: i.update(vocab_size="big"), "vocab_size must be a positive integer"),
    (lambda i: i.update(eos_id=1.5), "eos_id must be"),
])
def test_malformed_index_gives_one_line_errors(tmp_path, edit, message):
    write_shards(tmp_path, {"train": [("a", [1, 2, 3])]}, vocab_size=500, tokenizer_hash="h", eos_id=0)
    index = json.loads((tmp_path / "index.json").read_text())
    edit(index)
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(InputFormatError, match=message) as info:
        ShardSet.open(tmp_path)
    assert "\n" not in str(info.value)


def test_index_is_removed_before_shards_are_rewritten(tmp_path):
    write_shards(tmp_path, {"train": [("a", [1, 2, 3])]}, vocab_size=500, tokenizer_hash="h", eos_id=None)

    def crashing():
        yield "a", np.array([4, 5])
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):  # train-00000.bin is rewritten (same size), then val fails
        write_shards(tmp_path, {"train": [("a", [7, 8, 9])], "val": crashing()}, vocab_size=500,
                     tokenizer_hash="h2", eos_id=None)
    with pytest.raises(InputFormatError, match="no shard index"):  # never the old index over new files
        ShardSet.open(tmp_path)
