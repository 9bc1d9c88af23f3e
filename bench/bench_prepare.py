"""Whole-pipeline throughput of `fastllm prepare` on real text (Shakespeare plays as blocks + the
KJV as JSONL), plus the throughput of each per-document component on the same documents, so the
slowest stage is named with its share of the time.

The cleaning components are timed against their references in the same run (interleaved, median
of --repeats): normalize against normalize_ref (one regex per step) and PII against redact_ref
(the regex prefilters), on KJV verses and on Shakespeare blocks. The quality statistics' previous
C++ is gone, so quality (and the whole pipeline) are compared with the figures this script gave
before the fast paths (PREVIOUS, same machine, quiet).
Run: .venv/bin/python bench/bench_prepare.py [--workers 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastllm.cli.config_io import build  # noqa: E402
from fastllm.data.config import PrepareConfig  # noqa: E402
from fastllm.data.pipeline import prepare  # noqa: E402
from fastllm.utils.progress import set_quiet  # noqa: E402
from tests.data.corpus import kjv_paragraphs, play_files  # noqa: E402

# This script's figures before the cleaning fast paths (2026-11-25 17:10 UTC, AMD EPYC Zen 4,
# 2 cores, quiet machine; bench/RESULTS.md): MB/s, the components on the KJV verses.
PREVIOUS = {"pipeline": 3.40, "normalize": 21.4, "pii": 23.7, "quality": 33.8}


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions interleaved in every round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cleaning_steps(texts: list[str], threads: int) -> dict[str, tuple[Callable, Callable | None]]:
    """name -> (ours, reference or None), as the clean stage calls them."""
    from fastllm.data.normalize import NormalizeConfig, Normalizer, normalize_ref
    from fastllm.data.pii import redact_many, redact_ref
    from fastllm.data.quality import QualityConfig, QualityFilter

    norm_config = NormalizeConfig()
    norm, quality = Normalizer(norm_config), QualityFilter(QualityConfig(), num_threads=threads)
    return {"normalize": (lambda: norm.normalize_many(texts), lambda: [normalize_ref(t, norm_config) for t in texts]),
            "pii": (lambda: redact_many(texts), lambda: [redact_ref(t) for t in texts]),
            "quality": (lambda: quality.reasons(texts), None)}


def components(texts: list[str], tokenizer_path: Path, threads: int, repeats: int) -> tuple[dict, dict]:
    """(ours, references): median seconds per component on `texts`."""
    from fastllm.data.decontam import EvalIndex
    from fastllm.data.minhash import MinHasher
    from fastllm.tokenizer import Tokenizer

    index = EvalIndex.from_texts({"eval": texts[:50]})
    tok = Tokenizer.from_file(tokenizer_path)
    clean = cleaning_steps(texts, threads)
    ours = {name: fn for name, (fn, _) in clean.items()}
    ours.update({"decontam": lambda: index.match(texts, threads),
                 "minhash": lambda: MinHasher(128, 5, "alnum", num_threads=threads).signatures(texts),
                 "tokenize": lambda: tok.encode_batch(texts, num_threads=threads)})
    refs = {f"{name} ref": ref for name, (_, ref) in clean.items() if ref is not None}
    seconds = timed({**ours, **refs}, repeats)
    return ({name: seconds[name] for name in ours},
            {name: seconds[f"{name} ref"] for name, (_, ref) in clean.items() if ref is not None})


def print_components(title: str, mb: float, ours: dict[str, float], refs: dict[str, float],
                     previous: dict[str, float]) -> None:
    print(f"{title} ({mb:.1f} MB, 1 thread, median): ours | reference, ratio = reference time / ours"
          + (" | before (PREVIOUS), ratio" if previous else ""))
    total = sum(ours.values())
    for name, sec in sorted(ours.items(), key=lambda kv: -kv[1]):
        line = f"  {name:10s} {mb / sec:8.1f} MB/s  {sec / total:5.1%} of component time"
        if name in refs:
            line += f"  | ref {mb / refs[name]:7.1f} MB/s  ratio {refs[name] / sec:5.2f}x"
        if name in previous:
            line += f"  | before {previous[name]:5.1f} MB/s  ratio {mb / sec / previous[name]:5.2f}x"
        print(line)
    slowest = max(ours, key=ours.get)
    print(f"  slowest component: {slowest} ({ours[slowest] / total:.0%})")


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    set_quiet(True)
    print(f"machine: {machine()}")
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
              f"tokenizer training included); before: {PREVIOUS['pipeline']:.2f} MB/s, ratio "
              f"{mb / total / PREVIOUS['pipeline']:.2f}x")
        stages = stats["seconds_per_stage"]
        for name, sec in stages.items():
            print(f"  stage {name:10s} {sec:6.2f} s  {sec / sum(stages.values()):5.1%}")
        tokenizer = root / "out" / "tokenizer.json"
        texts = paragraphs[:3000]
        ours, refs = components(texts, tokenizer, threads=1, repeats=args.repeats)
        print_components("per-document components on KJV verses", sum(len(t.encode()) for t in texts) / 1e6,
                         ours, refs, PREVIOUS)
        blocks = [b for play in play_files() for b in re.split(r"\n[ \t]*\n", play.read_text(encoding="utf-8"))]
        blocks = blocks[:20000]
        ours, refs = components(blocks, tokenizer, threads=1, repeats=args.repeats)
        print_components("per-document components on Shakespeare blocks",
                         sum(len(t.encode()) for t in blocks) / 1e6, ours, refs, {})
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
