"""Whole-pipeline throughput of `fastllm prepare` on real text (Shakespeare plays as blocks + the
KJV as JSONL), plus the throughput of each per-document component on the same documents, so the
slowest stage is named with its share of the time.
Run: .venv/bin/python bench/bench_prepare.py [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastllm.cli.config_io import build  # noqa: E402
from fastllm.data.config import PrepareConfig  # noqa: E402
from fastllm.data.pipeline import prepare  # noqa: E402
from fastllm.utils.progress import set_quiet  # noqa: E402
from tests.data.corpus import kjv_paragraphs, play_files  # noqa: E402


def components(texts: list[str], tokenizer_path: Path, threads: int) -> dict[str, float]:
    from fastllm.data.decontam import EvalIndex
    from fastllm.data.minhash import MinHasher
    from fastllm.data.normalize import NormalizeConfig, Normalizer
    from fastllm.data.pii import redact
    from fastllm.data.quality import QualityConfig, QualityFilter
    from fastllm.tokenizer import Tokenizer

    norm, quality = Normalizer(NormalizeConfig()), QualityFilter(QualityConfig(), num_threads=threads)
    index = EvalIndex.from_texts({"eval": texts[:50]})
    tok = Tokenizer.from_file(tokenizer_path)
    steps = {"normalize": lambda: [norm(t) for t in texts], "quality": lambda: quality.reasons(texts),
             "decontam": lambda: index.match(texts, threads), "pii": lambda: [redact(t) for t in texts],
             "minhash": lambda: MinHasher(128, 5, "alnum", num_threads=threads).signatures(texts),
             "tokenize": lambda: tok.encode_batch(texts, num_threads=threads)}
    seconds = {}
    for name, fn in steps.items():
        start = time.perf_counter()
        fn()
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    set_quiet(True)
    root = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        (root / "plays").mkdir()
        for play in play_files():
            shutil.copy(play, root / "plays" / play.name)
        paragraphs = kjv_paragraphs()
        (root / "kjv.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
        mb = (sum(p.stat().st_size for p in (root / "plays").iterdir()) + (root / "kjv.jsonl").stat().st_size) / 1e6
        config = build(PrepareConfig, {
            "out_dir": str(root / "out"), "workers": args.workers, "task_bytes": 2_000_000,
            "sources": [{"name": "shakespeare", "paths": [str(root / "plays")], "format": "txt", "txt_mode": "block"},
                        {"name": "kjv", "paths": [str(root / "kjv.jsonl")]}],
            "quality": {"min_words": 20}, "tokenizer": {"train_vocab_size": 2048, "train_max_bytes": 2_000_000},
        }, "bench")
        start = time.perf_counter()
        prepare(config)
        total = time.perf_counter() - start
        stats = json.loads((root / "out" / "stats.json").read_text())
        print(f"whole pipeline: {mb:.1f} MB in {total:.1f} s = {mb / total:.2f} MB/s (workers={args.workers}, "
              f"tokenizer training included)")
        stages = stats["seconds_per_stage"]
        for name, sec in stages.items():
            print(f"  stage {name:10s} {sec:6.2f} s  {sec / sum(stages.values()):5.1%}")
        texts = paragraphs[:3000]
        seconds = components(texts, root / "out" / "tokenizer.json", threads=1)
        tmb = sum(len(t.encode()) for t in texts) / 1e6
        print(f"per-document components on {tmb:.1f} MB (1 thread):")
        for name, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {name:10s} {tmb / sec:8.1f} MB/s  {sec / sum(seconds.values()):5.1%} of component time")
        slowest = max(seconds, key=seconds.get)
        print(f"slowest component: {slowest} ({seconds[slowest] / sum(seconds.values()):.0%})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
