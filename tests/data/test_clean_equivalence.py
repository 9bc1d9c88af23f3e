"""`prepare` end to end with the fast cleaning paths and with the Python references patched in
(normalize_ref, redact_ref, text_stats_ref and the plain forbidden-substring test) writes the same
bytes: Parquet parts, quarantine files, token shards and stats. The golden digests pin each
component; this pins how the clean stage strings them together (batches, accounting)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

import fastllm.data.clean as clean
import fastllm.data.normalize as normalize
import fastllm.data.pii as pii
import fastllm.data.quality as quality
from fastllm.cli.config_io import build
from fastllm.data.config import PrepareConfig
from fastllm.data.pipeline import prepare
from tests.data.corpus import kjv_paragraphs, play_files
from tests.data.test_clean_golden import corpus


def _inputs(root: Path) -> list[dict]:
    (root / "plays").mkdir(parents=True)
    for play in play_files()[:3]:
        shutil.copy(play, root / "plays" / play.name)
    texts = kjv_paragraphs(800) + list(corpus("web"))[:400] + list(corpus("pii")) + list(corpus("tricky"))[:300]
    (root / "mixed.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return [{"name": "plays", "paths": [str(root / "plays")], "format": "txt", "txt_mode": "block"},
            {"name": "mixed", "paths": [str(root / "mixed.jsonl")]}]


def _run(root: Path, name: str, sources: list[dict]) -> tuple[dict[str, str], dict]:
    out = root / name
    prepare(build(PrepareConfig, {
        "out_dir": str(out), "workers": 1, "sources": sources, "batch_docs": 97,
        "quality": {"min_words": 5}, "normalize": {"fix_mojibake": True},
        "tokenizer": {"train_vocab_size": 300, "train_max_bytes": 300_000}}, "test"))
    digests = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(out.rglob("*")) if p.suffix in (".parquet", ".jsonl", ".bin")}
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("seconds_per_stage", None)
    stats.get("config", {}).pop("out_dir", None)
    return digests, stats


def _use_references(monkeypatch) -> None:
    monkeypatch.setattr(normalize.Normalizer, "normalize_many",
                        lambda self, texts: [normalize.normalize_ref(t, self.config) for t in texts])
    monkeypatch.setattr(clean, "redact_many", lambda texts, types: [pii.redact_ref(t, types) for t in texts])

    def stats_ref(texts, stop_words=quality.GOPHER_STOP_WORDS, num_threads=None):
        rows = [quality.text_stats_ref(t, stop_words) for t in texts]
        return np.array(rows, dtype=np.float64).reshape(len(texts), len(quality.STAT_NAMES))

    def forbidden_ref(self, texts, result):
        forbidden = [s.lower() for s in self.config.forbidden_substrings]
        for i, text in enumerate(texts):
            if result[i] is None and forbidden and any(s in text.lower() for s in forbidden):
                result[i] = "forbidden_substring"

    monkeypatch.setattr(quality, "text_stats", stats_ref)
    monkeypatch.setattr(quality.QualityFilter, "_text_checks", forbidden_ref)


def test_prepare_writes_the_same_bytes_as_the_references(tmp_path, monkeypatch):
    sources = _inputs(tmp_path)
    fast_files, fast_stats = _run(tmp_path, "fast", sources)
    clean._components.cache_clear()
    _use_references(monkeypatch)
    ref_files, ref_stats = _run(tmp_path, "ref", sources)
    clean._components.cache_clear()
    assert fast_files and fast_files == ref_files
    assert fast_stats == ref_stats
