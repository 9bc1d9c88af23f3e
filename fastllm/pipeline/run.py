"""`fastllm pipeline`: prepare -> tokenizer -> pretrain -> perplexity -> report, in one run dir.

    runs/<name>/data/          shards, stats.json, the data report (fastllm.data.prepare)
    runs/<name>/tokenizer/     tokenizer.json (BPE trained on the cleaned training split)
    runs/<name>/ckpt/, model/  checkpoints and the HF-format model (fastllm.train.pretrain)
    runs/<name>/eval/          perplexity.json
    runs/<name>/report.md      loss curve, perplexity and bits per byte vs a unigram baseline, samples

Every stage resumes: prepare skips finished stages, pretraining continues its newest checkpoint.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from fastllm.cli.config_io import build, load_config
from fastllm.pipeline.config import PipelineConfig
from fastllm.pipeline.corpus import kjv_text, shakespeare_prepare
from fastllm.pipeline.report import write_report
from fastllm.utils.atomic import write_bytes, write_json


def _say(message: str) -> None:
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)


def run_pipeline(config: PipelineConfig) -> Path:
    """Runs every stage; returns the path of report.md."""
    run_dir = config.run_dir
    if config.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    times: dict[str, float] = {}

    start = time.perf_counter()
    data_dir, tokenizer_path = _prepare(config, run_dir)
    times["prepare + tokenizer"] = time.perf_counter() - start

    start = time.perf_counter()
    train = _pretrain(config, run_dir, data_dir, tokenizer_path)
    times["pretrain"] = time.perf_counter() - start

    start = time.perf_counter()
    evaluation = _evaluate(config, run_dir, data_dir, tokenizer_path)
    times["perplexity + samples"] = time.perf_counter() - start

    report = write_report(config, run_dir, data_dir, train, evaluation, times)
    _say(f"done: {report}")
    return report


def _prepare(config: PipelineConfig, run_dir: Path) -> tuple[Path, Path]:
    from fastllm.data import prepare
    from fastllm.data.config import PrepareConfig

    data_dir = run_dir / "data"
    _say(f"prepare: cleaning, dedup, BPE tokenizer ({config.vocab_size} tokens), shards -> {data_dir}")
    if config.prepare_config is not None:
        prepare_config = load_config(PrepareConfig, config.prepare_config, [f"--out_dir={data_dir}"])
    else:
        prepare_config = build(PrepareConfig, shakespeare_prepare(data_dir, config.vocab_size, config.seed), "pipeline")
    data_dir = Path(prepare(prepare_config))
    tokenizer_path = run_dir / "tokenizer" / "tokenizer.json"
    write_bytes(tokenizer_path, (data_dir / "tokenizer.json").read_bytes())
    return data_dir, tokenizer_path


def _pretrain(config: PipelineConfig, run_dir: Path, data_dir: Path, tokenizer_path: Path):
    from fastllm.train import PretrainConfig, pretrain

    _say(f"pretrain: {config.preset} model, {config.steps} steps of {config.batch_size} x {config.seq_len} tokens")
    pretrain_config = build(PretrainConfig, {
        "out_dir": str(run_dir), "data": {"shards": str(data_dir), "seq_len": config.seq_len,
                                          "tokenizer": str(tokenizer_path)},
        "model": {"preset": config.preset}, "steps": config.steps, "batch_size": config.batch_size,
        "micro_batch": config.micro_batch, "seed": config.seed, "eval_every": config.eval_every,
        "eval_tokens": 16384, "save_every": max(50, config.steps // 4), "keep_last": 1, "log_every": 5,
        "resume": True, "optim": {"lr": config.lr, "warmup_steps": min(config.warmup_steps, config.steps // 2)},
    }, "pipeline")
    return pretrain(pretrain_config)


def _evaluate(config: PipelineConfig, run_dir: Path, data_dir: Path, tokenizer_path: Path) -> dict:
    from fastllm.eval.perplexity import cap_tokens, stream_perplexity, token_byte_lengths, unigram_baseline
    from fastllm.model import load_pretrained
    from fastllm.model.generate import generate_text
    from fastllm.tokenizer import Tokenizer
    from fastllm.train.data import open_shards

    tokenizer = Tokenizer.from_file(tokenizer_path)
    model = load_pretrained(run_dir / "model")
    shards = open_shards(data_dir)
    window = config.eval_window or config.seq_len
    stride = config.eval_stride or window
    token_bytes = token_byte_lengths(tokenizer)
    train_streams = shards.split("train")
    texts = {"held-out plays": cap_tokens([np.asarray(a, dtype=np.int64) for a in shards.split("val")],
                                    config.eval_max_tokens)}
    if config.kjv_max_bytes:
        texts["KJV Bible (out of domain)"] = [np.asarray(tokenizer.encode(kjv_text(config.kjv_max_bytes)),
                                                        dtype=np.int64)]
    results = {}
    for label, streams in texts.items():
        _say(f"perplexity: {label} ({sum(len(s) for s in streams):,} tokens, window {window}, stride {stride})")
        ours = stream_perplexity(model, streams, window=window, stride=stride, token_bytes=token_bytes)
        unigram = unigram_baseline(train_streams, model.config.vocab_size, streams, window=window, stride=stride,
                                   token_bytes=token_bytes)
        results[label] = {"model": ours.as_dict(), "unigram": unigram.as_dict()}
    write_json(run_dir / "eval" / "perplexity.json", results)
    prompts = ["", "ROMEO.\n", "To be, or not to be", "KING.\nMy lords,"][: config.samples]
    samples = [(prompt, generate_text(model, tokenizer, prompt, config.sample_tokens, temperature=0.8, top_p=0.95,
                                      seed=config.seed + i)[0]) for i, prompt in enumerate(prompts)]
    return {"perplexity": results, "samples": samples, "window": window, "stride": stride}
