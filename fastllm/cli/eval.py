"""`fastllm eval perplexity --model runs/x/model --text a.txt b.txt` (or --shards dir --split val)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.cli.main import Command


@dataclass
class PerplexityConfig:
    model: Path = field(default=Path("runs/shakespeare/model"), metadata={"help": "HF-format model directory or .gguf file"})
    text: list[Path] = field(default_factory=list, metadata={"help": "UTF-8 text files (each one stream)"})
    shards: Path | None = field(default=None, metadata={"help": "token shard directory (instead of text)"})
    split: str = field(default="val", metadata={"help": "shard split to evaluate"})
    tokenizer: Path | None = field(default=None, metadata={"help": "tokenizer.json (default: the model directory's)"})
    window: int = field(default=0, metadata={"help": "tokens per window (0: the model's max_seq_len, at most 1024)"})
    stride: int = field(default=0, metadata={"help": "window step; 0 or = window: non-overlapping; smaller: sliding"})
    batch_size: int = field(default=4, metadata={"help": "windows per forward pass"})
    max_tokens: int = field(default=0, metadata={"help": "evaluate at most this many tokens (0: all)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    dtype: Literal["float32", "bfloat16", "float16"] = field(default="float32", metadata={"help": "weight dtype"})
    out: Path | None = field(default=None, metadata={"help": "write <out>.json and <out>.md reports"})

    def validate(self) -> None:
        if bool(self.text) == (self.shards is not None):
            raise ValueError("give either --text files or --shards (one of them)")
        if self.window < 0 or self.stride < 0 or self.batch_size <= 0:
            raise ValueError("window and stride must be >= 0 and batch_size positive")


def perplexity(config: PerplexityConfig) -> dict:
    import torch

    from fastllm.eval.perplexity import (
        read_shard_streams,
        read_text_streams,
        stream_perplexity,
        token_byte_lengths,
    )
    from fastllm.model import load_pretrained
    from fastllm.model.hf_io import load_tokenizer
    from fastllm.train.distributed import pick_device
    from fastllm.utils.errors import ConfigError

    model = load_pretrained(config.model, dtype=getattr(torch, config.dtype), device=pick_device(config.device))
    needs_tokenizer = bool(config.text) or config.tokenizer is not None or (Path(config.model) / "tokenizer.json").is_file()
    tokenizer = load_tokenizer(config.model, config.tokenizer) if needs_tokenizer else None
    if config.text:
        streams, _ = read_text_streams(config.text, tokenizer, config.max_tokens)
    else:
        streams = read_shard_streams(config.shards, config.split, model_vocab=model.config.vocab_size,
                                     tokenizer_hash=tokenizer.hash() if tokenizer else None, max_tokens=config.max_tokens)
    window = config.window or min(model.config.max_seq_len, 1024)
    if window > model.config.max_seq_len:
        raise ConfigError(f"--window {window} exceeds the model's max_seq_len {model.config.max_seq_len}")
    if window < 2 or config.stride > window:
        raise ConfigError(f"--window {window} / --stride {config.stride}: need window >= 2 and stride <= window")
    result = stream_perplexity(model, streams, window=window, stride=config.stride or window,
                               batch_size=config.batch_size,
                               token_bytes=token_byte_lengths(tokenizer) if tokenizer else None)
    report = {"model": str(config.model), "source": [str(t) for t in config.text] or f"{config.shards}:{config.split}",
              **result.as_dict()}
    print(_markdown(report))
    if config.out is not None:
        from fastllm.utils.atomic import write_json, write_text

        write_json(config.out.with_suffix(".json"), report)
        write_text(config.out.with_suffix(".md"), _markdown(report) + "\n")
    return report


def _markdown(report: dict) -> str:
    bpb = f"{report['bits_per_byte']:.4f}" if report["bits_per_byte"] is not None else "n/a (no tokenizer)"
    mode = "non-overlapping" if report["stride"] == report["window"] else f"sliding, stride {report['stride']}"
    return "\n".join([f"# Perplexity of {report['model']}", "",
                      f"source: {report['source']}; windows of {report['window']} tokens ({mode})", "",
                      "| perplexity | loss (nats/token) | bits/byte | tokens | windows |", "|---|---|---|---|---|",
                      f"| {report['perplexity']:.3f} | {report['loss']:.4f} | {bpb} | {report['tokens']:,} | "
                      f"{report['windows']:,} |"])


def run_perplexity(config: PerplexityConfig) -> int:
    perplexity(config)
    return 0


COMMANDS = {"perplexity": Command("Perplexity and bits per byte of a model (directory or .gguf) on text files "
                                  "or token shards, with non-overlapping or sliding windows.",
                                  PerplexityConfig, run_perplexity)}
