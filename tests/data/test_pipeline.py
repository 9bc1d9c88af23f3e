"""End to end on real text (Shakespeare + KJV) with injected duplicates, near duplicates, PII,
contamination and broken records, each caught; accounting identity; mixing shares; determinism
across worker counts and executors; resume, skip and invalidation."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastllm.cli.config_io import build
from fastllm.data.config import PrepareConfig
from fastllm.data.pipeline import prepare
from fastllm.data.quality import QualityConfig, QualityFilter
from fastllm.data.shards import ShardSet
from tests.data.corpus import kjv_paragraphs, play_files

EMAILS = [f"reader{i}@example.org" for i in range(4)]
CARD = "4111 1111 1111 1111"
SPECIAL_TEXT = "the marker <|end_of_text|> is only text here"


QUALITY = {"min_words": 20, "max_top_ngram": {}, "max_dup_lines": None, "max_dup_line_chars": None}


def _corpus(root: Path) -> dict[str, Path]:
    (root / "plays").mkdir(parents=True)
    for play in play_files()[:4]:
        shutil.copy(play, root / "plays" / play.name)
    candidates = [p for p in kjv_paragraphs(700) if 60 <= len(p.split()) <= 400]
    reasons = QualityFilter(QualityConfig(**QUALITY)).reasons(candidates)
    paragraphs = [p for p, r in zip(candidates, reasons) if r is None][:260]  # injections must pass quality
    docs = list(paragraphs)
    docs += paragraphs[:6]                                                       # exact duplicates
    for p in [p for p in paragraphs[40:] if len(p.split()) >= 150][:6]:           # near duplicates
        words = p.split()
        words[len(words) // 2] = "behold"
        docs.append(" ".join(words))
    for i, email in enumerate(EMAILS):                                           # PII
        docs[20 + i] = docs[20 + i] + f" Write to {email} or pay with card {CARD}."
    docs[25] = docs[25] + f" {SPECIAL_TEXT}"                                     # special-token text
    eval_texts = paragraphs[30:33]                                               # contamination
    lines = [json.dumps({"text": d, "id": f"kjv{i}"}) for i, d in enumerate(docs)]
    lines.insert(50, '{"text": "a broken record')                                # quarantine
    with gzip.open(root / "kjv.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    (root / "eval.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in eval_texts))
    return {"eval_texts": eval_texts, "paragraphs": paragraphs}


def _config(root: Path, out: Path, **overrides) -> PrepareConfig:
    data = {
        "out_dir": str(out), "workers": 1, "seed": 7,
        "sources": [{"name": "shakespeare", "paths": [str(root / "plays")], "format": "txt", "txt_mode": "block",
                     "weight": 0.5},
                    {"name": "kjv", "paths": [str(root / "kjv.jsonl.gz")], "id_field": "id", "weight": 0.5}],
        "quality": dict(QUALITY),
        "decontam": {"eval_sets": {"kjv_eval": str(root / "eval.jsonl")}},
        "split": {"val_fraction": 0.1}, "task_bytes": 150_000, "tokenizer": {"path": str(root / "tok.json")},
    }
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name:
            data.setdefault(section, {})[name] = value
        else:
            data[key] = value
    return build(PrepareConfig, data, "test")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fastllm.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("corpus")
    info = _corpus(root)
    text = "\n\n".join(info["paragraphs"][:120])
    train_bpe([text], 512, special_tokens=("<|begin_of_text|>", "<|end_of_text|>")).save(root / "tok.json")
    return root, info


@pytest.fixture(scope="module")
def e2e(corpus, tmp_path_factory):
    root, info = corpus
    out = tmp_path_factory.mktemp("e2e") / "data"
    prepare(_config(root, out))
    return out, json.loads((out / "stats.json").read_text()), info


def _drops(stats, stage, source):
    return {k: v["docs"] for k, v in stats["stages"][stage]["sources"][source]["dropped"].items()}


def _all_text(out: Path) -> str:
    from fastllm.tokenizer import Tokenizer

    tok, shards = Tokenizer.from_file(out / "tokenizer.json"), ShardSet.open(out)
    return "".join(tok.decode(t.tolist()) for split in ("train", "val") for t in shards.split(split))


def test_injected_problems_are_caught(e2e):
    out, stats, info = e2e
    assert stats["identity_ok"], stats["identity_errors"]
    dedup = _drops(stats, "dedup", "kjv")
    assert dedup["exact_duplicate"] >= 6 and dedup["near_duplicate"] >= 6
    assert stats["stages"]["decontam"]["extra"]["docs_matched_per_eval_set"] == {"kjv_eval": 3}
    assert _drops(stats, "decontam", "kjv") == {"contaminated": 3}
    assert stats["stages"]["pii"]["extra"]["redactions:kjv"] == {"EMAIL": 4, "CREDIT_CARD": 4}
    assert _drops(stats, "read", "kjv") == {"quarantined:invalid_json": 1}
    quarantine = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert quarantine[0]["reason"] == "invalid_json" and quarantine[0]["location"] == "line 51"
    text = _all_text(out)
    assert not any(e in text for e in EMAILS) and CARD not in text and "<EMAIL>" in text
    assert not any(t[:200] in text for t in info["eval_texts"])
    assert SPECIAL_TEXT in text  # the document was kept, not refused for its special-token text
    shards = ShardSet.open(out)  # ... and that text is plain tokens: eos only ends documents
    eos_count = sum(int((t == shards.eos_id).sum()) for split in ("train", "val") for t in shards.split(split))
    assert eos_count == shards.num_documents("train") + shards.num_documents("val")
    assert "too_few_words" in _drops(stats, "quality", "shakespeare")
    assert "report.md" in {p.name for p in out.iterdir()} and "exact" in (out / "report.md").read_text()


def test_accounting_identity_per_stage(e2e):
    _, stats, _ = e2e
    chain = ["read", "normalize", "quality", "blocklist", "decontam", "pii", "dedup"]
    for source in ("kjv", "shakespeare"):
        for a, b in zip(chain, chain[1:]):
            assert stats["stages"][a]["sources"][source]["docs_out"] == stats["stages"][b]["sources"][source]["docs_in"]
        for stage in chain:
            s = stats["stages"][stage]["sources"][source]
            assert s["docs_in"] == s["docs_out"] + sum(d["docs"] for d in s["dropped"].values())


def test_mixing_shares_and_split(e2e):
    out, stats, _ = e2e
    for m in stats["mix"].values():
        assert abs(m["train_share"] - 0.5) < 0.03, stats["mix"]
    shards = ShardSet.open(out)
    assert shards.num_tokens("val") > 0 and shards.num_tokens("train") > 10 * shards.num_tokens("val") / 2
    assert set(shards.tokens_per_source) == {"kjv", "shakespeare"}


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*")) if p.suffix in (".bin", ".npy", ".json")
            and p.name != "stats.json"}


@pytest.mark.slow
def test_same_result_with_two_worker_processes(corpus, e2e, tmp_path):
    root, _ = corpus
    out = tmp_path / "data"
    prepare(_config(root, out, workers=2, threads=1))
    assert _shard_bytes(out) == _shard_bytes(e2e[0])
    keep = lambda d: sorted((d / "work" / "dedup").glob("*.keep.npy"))
    assert all(np.array_equal(np.load(a), np.load(b)) for a, b in zip(keep(out), keep(e2e[0])))


@pytest.mark.slow
def test_ray_executor_gives_identical_shards(corpus, e2e, tmp_path):
    pytest.importorskip("ray", reason="Ray is optional (pip install 'fastllm[ray]')")
    root, _ = corpus
    out = tmp_path / "data"
    prepare(_config(root, out, executor="ray", workers=2, threads=1))
    assert _shard_bytes(out) == _shard_bytes(e2e[0])


def test_resume_skips_done_work_redoes_partial_and_changed(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "data"
    config = _config(root, out, **{"decontam.eval_sets": {}})
    prepare(config)
    reference = _shard_bytes(out)
    clean = out / "work" / "clean"
    parts = sorted(clean.glob("part-*.parquet"))
    assert len(parts) >= 3
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    prepare(config)  # everything done: nothing is recomputed
    assert {p: p.stat().st_mtime_ns for p in parts} == stamps
    # A crash in the middle of the clean stage: one part's marker and the stage marker are missing.
    (clean / "_DONE.json").unlink()
    (clean / f"{parts[1].stem}.done.json").unlink()
    prepare(config)
    assert [p for p in parts if p.stat().st_mtime_ns != stamps[p]] == [parts[1]]
    assert _shard_bytes(out) == reference
    # A changed setting invalidates its stage and everything after it.
    prepare(_config(root, out, **{"decontam.eval_sets": {}, "quality.min_words": 40}))
    assert all(p.stat().st_mtime_ns != stamps[p] for p in parts if p.exists())
    assert _shard_bytes(out) != reference


def test_config_errors_are_one_line(tmp_path):
    from fastllm.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'qualty'"):
        build(PrepareConfig, {"qualty": {}, "sources": []}, "x.yaml")
    with pytest.raises(ConfigError, match="no sources"):
        build(PrepareConfig, {}, "x.yaml")
    config = build(PrepareConfig, {"sources": [{"name": "a", "paths": [str(tmp_path / "nope.txt")]}],
                                   "out_dir": str(tmp_path / "o"), "tokenizer": {"path": "t.json"}}, "x.yaml")
    with pytest.raises(ConfigError, match="nope.txt: no such file"):
        prepare(config)


def _small(root: Path, out: Path, docs: list[str], **overrides) -> PrepareConfig:
    """A one-source run on a few documents: the fast way to exercise stage logic."""
    path = root / "docs.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    data = {"out_dir": str(out), "workers": 1, "threads": 1, "sources": [{"name": "s", "paths": [str(path)]}],
            "quality": {"enabled": False}, "dedup": {"near": False}, "split": {"val_fraction": 0.0},
            "tokenizer": {"train_vocab_size": 300}, **overrides}
    return build(PrepareConfig, data, "test")


def test_trained_tokenizer_reads_documents_as_text_and_is_retrained_when_replaced(corpus, tmp_path):
    docs = ["readme.txt", "https://example.com/a/b.html"] + [f"plain words number {i} here" for i in range(40)]
    out = tmp_path / "data"
    prepare(_small(tmp_path, out, docs))  # documents that look like paths are text, not files to open
    trained = (out / "tokenizer.json").read_bytes()
    assert sorted(_all_text(out).split("<|end_of_text|>")) == sorted(docs + [""])
    given = corpus[0] / "tok.json"
    prepare(_small(tmp_path, out, docs, tokenizer={"path": str(given)}))
    assert (out / "tokenizer.json").read_bytes() == given.read_bytes()
    assert sorted(_all_text(out).split("<|end_of_text|>")) == sorted(docs + [""])  # encoded with the new one
    prepare(_small(tmp_path, out, docs))  # back to training: the given file must not be taken for it
    assert (out / "tokenizer.json").read_bytes() == trained


def test_no_surviving_document_is_a_one_line_error_with_a_report(tmp_path):
    from fastllm.utils.errors import FastLLMError

    out = tmp_path / "data"
    config = _small(tmp_path, out, ["too short"] * 3, quality={"min_words": 10})
    with pytest.raises(FastLLMError, match="no document survived") as info:
        prepare(config)
    assert "\n" not in str(info.value)
    stats = json.loads((out / "stats.json").read_text())
    assert _drops(stats, "quality", "s") == {"too_few_words": 3}
    assert "too_few_words" in (out / "report.md").read_text()


def test_changed_eval_set_content_redoes_decontamination(tmp_path):
    docs = [f"document {i} says the quick brown fox jumps over the lazy dog again and again today" for i in range(5)]
    docs += ["a unique line about something else entirely that nobody would ever evaluate a model on"]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"text": "nothing in common with any of the documents at all here"}) + "\n")
    out = tmp_path / "data"
    config = _small(tmp_path, out, docs, decontam={"eval_sets": {"ev": str(eval_file)}, "ngram": 8})
    prepare(config)
    assert _drops(json.loads((out / "stats.json").read_text()), "decontam", "s") == {}
    eval_file.write_text(json.dumps({"text": docs[-1]}) + "\n")  # same path and config, new content
    prepare(config)
    stats = json.loads((out / "stats.json").read_text())
    assert _drops(stats, "decontam", "s") == {"contaminated": 1}


@pytest.mark.parametrize("overrides, message", [
    ({"batch_docs": 0}, "batch_docs must be >= 1"),
    ({"dedup": {"num_perm": 0}}, "num_perm and ngram must be >= 1"),
    ({"tokenizer": {"train_vocab_size": 100}}, "train_vocab_size: 100 is below 258"),
    ({"tokenizer": {"train_vocab_size": 300, "pattern": "o200k"}}, "pattern: 'o200k'"),
    ({"shards": {"max_tokens": 0}}, "max_tokens must be >= 1"),
])
def test_bad_values_are_refused_before_any_work(tmp_path, overrides, message):
    from fastllm.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        _small(tmp_path, tmp_path / "data", ["some text"], **overrides)
    assert "\n" not in str(info.value)


def test_missing_tokenizer_file_fails_before_cleaning(tmp_path):
    from fastllm.utils.errors import FastLLMError

    out = tmp_path / "data"
    with pytest.raises(FastLLMError, match="nope.json: tokenizer file not found"):
        prepare(_small(tmp_path, out, ["some text here"], tokenizer={"path": str(tmp_path / "nope.json")}))
    assert not (out / "work").exists()


def test_dedup_switches_redo_the_reduce_but_not_the_signatures(tmp_path):
    docs = [f"plain words number {i} here" for i in range(20)] * 2  # every document twice
    out = tmp_path / "data"
    prepare(_small(tmp_path, out, docs))
    assert _drops(json.loads((out / "stats.json").read_text()), "dedup", "s") == {"exact_duplicate": 20}
    signatures = sorted((out / "work" / "minhash").glob("*.sig.npy"))
    stamps = [p.stat().st_mtime_ns for p in signatures]
    prepare(_small(tmp_path, out, docs, dedup={"near": False, "exact": False}))
    assert _drops(json.loads((out / "stats.json").read_text()), "dedup", "s") == {}
    assert signatures and [p.stat().st_mtime_ns for p in signatures] == stamps


def test_missing_optional_packages_are_named_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from fastllm.utils.errors import FastLLMError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    out = tmp_path / "data"
    with pytest.raises(FastLLMError, match=r"missing pyarrow \(for stage files\); install them with"):
        prepare(_small(tmp_path, out, ["some text here"]))
    assert not (out / "work").exists()


def test_a_new_signature_algorithm_invalidates_stored_signatures(tmp_path, monkeypatch):
    # Signatures from another version of the MinHash algorithm must never be mixed with new ones.
    import fastllm.data.pipeline as pipeline_module

    docs = [f"plain words number {i} and some more words here" for i in range(30)]
    out = tmp_path / "data"
    prepare(_small(tmp_path, out, docs))
    signatures = sorted((out / "work" / "minhash").glob("*.sig.npy"))
    assert signatures
    stamps = {p: p.stat().st_mtime_ns for p in signatures}
    prepare(_small(tmp_path, out, docs))
    assert {p: p.stat().st_mtime_ns for p in signatures} == stamps
    monkeypatch.setattr(pipeline_module, "SIGNATURE_VERSION", pipeline_module.SIGNATURE_VERSION + 1)
    prepare(_small(tmp_path, out, docs))
    assert all(p.stat().st_mtime_ns != stamps[p] for p in signatures)
