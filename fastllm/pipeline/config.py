"""The typed configuration of `fastllm pipeline` (every field has a default: no arguments needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class PipelineConfig:
    name: str = field(default="shakespeare", metadata=_help("run name: everything goes to <runs_dir>/<name>/"))
    runs_dir: Path = field(default=Path("runs"), metadata=_help("parent of run directories"))
    prepare_config: Path | None = field(default=None, metadata=_help(
        "a `fastllm prepare` YAML to use instead of the embedded Shakespeare corpus"))
    vocab_size: int = field(default=4096, metadata=_help("BPE vocabulary trained on the training split"))
    preset: str = field(default="demo", metadata=_help("model preset (fastllm.model.PRESETS)"))
    seq_len: int = field(default=256, metadata=_help("training window in tokens"))
    batch_size: int = field(default=16, metadata=_help("sequences per optimizer step"))
    micro_batch: int = field(default=16, metadata=_help("sequences per forward pass"))
    steps: int = field(default=500, metadata=_help("optimizer steps"))
    lr: float = field(default=3e-3, metadata=_help("peak learning rate (warmup + cosine)"))
    warmup_steps: int = field(default=30, metadata=_help("linear warmup steps"))
    eval_every: int = field(default=50, metadata=_help("validation loss every N steps during training"))
    seed: int = field(default=1337, metadata=_help("data, split and weight seed"))
    eval_window: int = field(default=0, metadata=_help("perplexity window (0: seq_len)"))
    eval_stride: int = field(default=0, metadata=_help("perplexity stride (0: non-overlapping windows)"))
    eval_max_tokens: int = field(default=65536, metadata=_help("held-out tokens evaluated at most (0: all)"))
    kjv_max_bytes: int = field(default=131072, metadata=_help("KJV text evaluated (0: skip the out-of-domain eval)"))
    samples: int = field(default=3, metadata=_help("generated samples in the report"))
    sample_tokens: int = field(default=80, metadata=_help("tokens per sample"))
    fresh: bool = field(default=False, metadata=_help("delete the run directory first (else stages resume)"))

    def validate(self) -> None:
        if min(self.vocab_size, self.seq_len, self.batch_size, self.micro_batch, self.steps) <= 0:
            raise ValueError("vocab_size, seq_len, batch_size, micro_batch and steps must be positive")
        if self.eval_window > self.seq_len:
            raise ValueError(f"eval_window {self.eval_window} exceeds seq_len {self.seq_len}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name must be a plain directory name, got {self.name!r}")

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name
