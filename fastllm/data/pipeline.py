"""`fastllm.data.prepare(config) -> Path`: the whole chain, resumable stage by stage.

    clean (map over input-file groups) -> minhash (map over parts) -> dedup (global)
      -> tokenizer (load or train) -> tokenize (map over parts) -> mix + shards (global) -> report

Intermediate outputs live in <out_dir>/work/<stage>/ with completion markers (markers.py); the
shards, tokenizer.json, stats.json, report.md and quarantine.jsonl go to <out_dir>.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastllm.cli.config_io import to_dict
from fastllm.data.clean import clean_task
from fastllm.data.config import PrepareConfig
from fastllm.data.dedup import dedup_reduce, minhash_task
from fastllm.data.document import utf8_length
from fastllm.data.executor import make_executor
from fastllm.data.markers import StageDir, file_fingerprint
from fastllm.data.minhash import SIGNATURE_VERSION
from fastllm.data.mix import DocTable, write_mix
from fastllm.data.readers import expand_paths
from fastllm.data.report import write_report
from fastllm.data.stats import merge
from fastllm.data.tokens import TRAIN, load_tokenizer, split_of, tokenize_task, train_tokenizer
from fastllm.utils.atomic import atomic_write
from fastllm.utils.errors import FastLLMError
from fastllm.utils.progress import byte_progress, progress


def _cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _display_paths(files: list[Path]) -> list[str]:
    if len(files) == 1:
        return [files[0].name]
    base = Path(os.path.commonpath([str(f.parent) for f in files]))
    return [str(f.relative_to(base)) for f in files]


def plan_clean_tasks(config: PrepareConfig) -> list[dict[str, Any]]:
    """Input files grouped into tasks of about task_bytes, sources in config order, files sorted."""
    tasks: list[dict[str, Any]] = []
    for source in config.sources:
        files = expand_paths(source.paths, where=f"sources.{source.name}.paths")
        group: list[list[str]] = []
        size = 0
        for path, display in zip(files, _display_paths(files)):
            group.append([str(path), display])
            size += path.stat().st_size
            if size >= config.task_bytes:
                tasks.append({"source": source.name, "files": group, "bytes": size})
                group, size = [], 0
        if group:
            tasks.append({"source": source.name, "files": group, "bytes": size})
    for i, task in enumerate(tasks):
        task["part"] = f"part-{i:05d}"
    return tasks


def check_packages(config: PrepareConfig, tasks: list[dict[str, Any]]) -> None:
    """The optional `fastllm[data]` packages this run needs, checked before any work."""
    needed = {"pyarrow": "stage files"}
    if any(path.endswith(".zst") for t in tasks for path, _ in t["files"]):
        needed["zstandard"] = ".zst inputs"
    if config.quality.scripts:
        needed["regex"] = "quality.scripts"
    missing = [f"{name} (for {why})" for name, why in needed.items() if importlib.util.find_spec(name) is None]
    if missing:
        raise FastLLMError(f"prepare: missing {', '.join(missing)}; install them with `pip install 'fastllm[data]'`")


class Pipeline:
    def __init__(self, config: PrepareConfig):
        self.config = config
        self.out = Path(config.out_dir)
        self.work = self.out / "work"
        self.workers = config.workers or _cpus()
        self.threads = config.threads or max(1, _cpus() // self.workers)
        self.timings: dict[str, float] = {}
        self.stats: dict[str, Any] = {}

    def _run_map(self, stage: StageDir, fn: Callable, tasks: list[dict[str, Any]], executor,
                 bar_total: int | None = None, bar_bytes: Callable[[dict], int] | None = None) -> list[Any]:
        done = stage.complete()
        if done is not None:
            return done
        stage.dir.mkdir(parents=True, exist_ok=True)
        results: list[Any] = [stage.part_result(t["part"]) for t in tasks]
        todo = [i for i, r in enumerate(results) if r is None]
        bar = (byte_progress(desc=stage.name, total=bar_total) if bar_bytes
               else progress(desc=stage.name, total=len(tasks), unit="part"))
        bar.update(sum(bar_bytes(tasks[i]) for i, r in enumerate(results) if r is not None) if bar_bytes
                   else len(tasks) - len(todo))
        started, docs = time.perf_counter(), 0

        def on_done(j: int, result: Any) -> None:
            nonlocal docs
            results[todo[j]] = result
            docs += result.get("docs", 0)
            bar.update(bar_bytes(tasks[todo[j]]) if bar_bytes else 1)
            bar.set_postfix_str(f"{docs / max(1e-9, time.perf_counter() - started):.0f} docs/s", refresh=False)

        try:
            executor.map(fn, [{**tasks[i], "stage_dir": str(stage.dir), "hash": stage.hash} for i in todo], on_done)
        finally:
            bar.close()
        stage.mark_complete(results)
        return results

    def run(self) -> Path:
        c = self.config
        tasks = plan_clean_tasks(c)
        check_packages(c, tasks)
        # A given tokenizer is checked before any work, so a wrong path fails in a second, not after cleaning.
        given = load_tokenizer(c.tokenizer.path) if c.tokenizer.path else None
        config_json = json.dumps(to_dict(c), sort_keys=True)
        executor = make_executor(c.executor, self.workers, c.ray_address)
        try:
            clean = self._timed("clean", lambda: self._clean(tasks, config_json, executor))
            parts = [r for r in clean if r["docs"] > 0]
            minhash_stage, dedup_stage = self._timed("dedup", lambda: self._dedup(parts, executor))
            if not any(s["docs_out"] for s in self.stats["dedup"]["sources"].values()):
                self._merge_quarantine(clean)
                write_report(self.out, self.stats, self.timings, c)
                raise FastLLMError(f"{self.out}: no document survived cleaning and deduplication; see "
                                   f"{self.out / 'report.md'} for the drop reasons")
            tokenizer, tok_key = self._timed("tokenizer", lambda: self._tokenizer(parts, dedup_stage, given))
            tokens = self._timed("tokenize", lambda: self._tokenize(parts, dedup_stage, tok_key, executor))
            self._timed("shards", lambda: self._shards(parts, tokens, tokenizer))
        finally:
            executor.close()
        self._merge_quarantine(clean)
        write_report(self.out, self.stats, self.timings, c)
        return self.out

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.timings[name] = time.perf_counter() - start
        return result

    def _clean(self, tasks, config_json, executor) -> list[dict[str, Any]]:
        c = self.config
        key = {"config": {k: v for k, v in json.loads(config_json).items()
                          if k in ("sources", "normalize", "quality", "blocklist", "decontam", "pii")},
               "inputs": [[file_fingerprint(p) for p, _ in t["files"]] for t in tasks],
               "lists": [file_fingerprint(p) for p in (c.blocklist.domains_file, c.blocklist.words_file) if p],
               "eval": {name: [file_fingerprint(f) for f in expand_paths([pattern], f"decontam.eval_sets.{name}")]
                        for name, pattern in sorted(c.decontam.eval_sets.items())}}
        for source in key["config"]["sources"]:
            source.pop("weight", None)
        stage = StageDir(self.work, "clean", key)
        for t in tasks:
            t.update(config_json=config_json, threads=self.threads, batch_docs=c.batch_docs)
        results = self._run_map(stage, clean_task, tasks, executor, bar_total=sum(t["bytes"] for t in tasks),
                                bar_bytes=lambda t: t["bytes"])
        for name in results[0]["stats"] if results else ():
            self.stats[name] = merge([r["stats"][name] for r in results])
        self.clean_hash = stage.hash
        return results

    def _dedup(self, parts, executor) -> tuple[StageDir, StageDir]:
        c = self.config
        dedup = to_dict(c.dedup)
        # The signatures depend on these settings and the signature algorithm's version only;
        # exact/near/verify change the reduce alone.
        signature = {k: v for k, v in dedup.items() if k not in ("exact", "near", "verify")}
        signature["signature_version"] = SIGNATURE_VERSION
        minhash_stage = StageDir(self.work, "minhash", {"clean": self.clean_hash, "dedup": signature})
        self._run_map(minhash_stage, minhash_task, [
            {"part": p["part"], "input": str(self.work / "clean" / f"{p['part']}.parquet"), "dedup": dedup,
             "threads": self.threads, "docs": p["docs"]} for p in parts], executor)
        dedup_stage = StageDir(self.work, "dedup", {"minhash": minhash_stage.hash, "dedup": dedup})
        stats = dedup_stage.complete()
        if stats is None:
            dedup_stage.dir.mkdir(parents=True, exist_ok=True)
            stats = dedup_reduce(parts, minhash_stage.dir, dedup_stage.dir, c.dedup)
            dedup_stage.mark_complete(stats)
        self.stats["dedup"] = stats
        return minhash_stage, dedup_stage

    def _tokenizer(self, parts, dedup_stage: StageDir, given):
        c = self.config.tokenizer
        target = self.out / "tokenizer.json"
        if given is not None:
            if Path(c.path).resolve() != target.resolve():
                with atomic_write(target, "wb") as handle:
                    handle.write(Path(c.path).read_bytes())
            return given, {"path": c.path, "hash": given.hash()}
        stage = StageDir(self.work, "tokenizer", {"dedup": dedup_stage.hash, "tokenizer": to_dict(c),
                                                  "split": to_dict(self.config.split), "seed": self.config.seed})
        done = stage.complete()
        tokenizer = load_tokenizer(target) if done is not None and target.is_file() else None
        # The marker alone is not enough: a later run with tokenizer.path may have replaced the file.
        if tokenizer is None or tokenizer.hash() != done["hash"]:
            tokenizer = train_tokenizer(self._training_texts(parts, dedup_stage), c.train_vocab_size,
                                        c.min_frequency, c.pattern, self.threads * self.workers)
            tokenizer.save(target)
            stage.dir.mkdir(parents=True, exist_ok=True)
            stage.mark_complete({"hash": tokenizer.hash()})
        return tokenizer, {"trained": stage.hash, "hash": tokenizer.hash()}

    def _training_texts(self, parts, dedup_stage: StageDir):
        import numpy as np
        import pyarrow.parquet as pq

        budget = self.config.tokenizer.train_max_bytes
        for p in parts:
            keep = np.load(dedup_stage.dir / f"{p['part']}.keep.npy", allow_pickle=False)
            table = pq.read_table(self.work / "clean" / f"{p['part']}.parquet", columns=["id", "text", "file"])
            ids, texts, files = (table.column(k).to_pylist() for k in ("id", "text", "file"))
            for row in np.flatnonzero(keep):
                if split_of(ids[row], files[row], self.config.split, self.config.seed) != TRAIN:
                    continue
                yield texts[row]
                budget -= utf8_length(texts[row])
                if budget <= 0:
                    return

    def _tokenize(self, parts, dedup_stage: StageDir, tok_key, executor) -> list[dict[str, Any]]:
        c = self.config
        stage = StageDir(self.work, "tokens", {"dedup": dedup_stage.hash, "tokenizer": tok_key,
                                               "split": to_dict(c.split), "seed": c.seed})
        self.tokens_hash = stage.hash
        tokenizer_path = str(self.out / "tokenizer.json")
        return self._run_map(stage, tokenize_task, [
            {"part": p["part"], "source": p["source"], "input": str(self.work / "clean" / f"{p['part']}.parquet"),
             "keep": str(dedup_stage.dir / f"{p['part']}.keep.npy"), "tokenizer": tokenizer_path,
             "tokenizer_hash": tok_key["hash"],
             "split": to_dict(c.split), "seed": c.seed, "threads": self.threads, "batch_docs": c.batch_docs}
            for p in parts], executor)

    def _shards(self, parts, tokens, tokenizer) -> None:
        c = self.config
        weights = {s.name: s.weight for s in c.sources} if c.sources[0].weight is not None else None
        stage = StageDir(self.work, "shards", {"tokens": self.tokens_hash, "weights": weights, "mix": to_dict(c.mix),
                                               "shards": to_dict(c.shards), "seed": c.seed})
        report = stage.complete()
        if report is None or not (self.out / "index.json").is_file():
            table = DocTable(parts, self.work / "tokens")
            eos = tokenizer.eos_id
            report = write_mix(table, self.out, weights=weights, total_tokens=c.mix.total_tokens, seed=c.seed,
                               vocab_size=tokenizer.vocab_size, tokenizer_hash=tokenizer.hash(), eos_id=eos,
                               max_shard_tokens=c.shards.max_tokens)
            stage.dir.mkdir(parents=True, exist_ok=True)
            stage.mark_complete(report)
        self.stats["mix"] = report
        self.stats["tokenize"] = {"parts": len(tokens),
                                  "tokens": {s: sum(t["tokens"][s] for t in tokens) for s in ("train", "val")},
                                  "documents": {s: sum(t["docs_per_split"][s] for t in tokens) for s in ("train", "val")}}

    def _merge_quarantine(self, clean) -> None:
        with atomic_write(self.out / "quarantine.jsonl", "wb") as out:
            for r in clean:
                path = self.work / "clean" / f"{r['part']}.quarantine.jsonl"
                if path.is_file():
                    with open(path, "rb") as handle:
                        shutil.copyfileobj(handle, out)


def prepare(config: PrepareConfig) -> Path:
    """Runs the data pipeline; returns the shard directory (index.json, *.bin, tokenizer.json, stats)."""
    return Pipeline(config).run()
