"""The typed configuration of `fastllm pretrain` (configs/pretrain/*.yaml fill it).

Batch sizes are global: `batch_size` sequences per optimizer step across all processes, split
into `micro_batch` sequences per process per forward; gradient accumulation is what remains
(batch_size / (micro_batch * world_size)). So one config gives the same optimization on 1 or N
processes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.model.config import ModelConfig


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelSection:
    """A preset plus any fields to override (unset fields keep the preset's value)."""

    preset: str = field(default="tiny", metadata=_help("starting shape: tiny, demo, small, 124m, smollm2-135m, 1b, 8b"))
    vocab_size: int | None = field(default=None, metadata=_help("default: the shards' vocab_size"))
    dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    ffn_dim: int | None = None
    max_seq_len: int | None = field(default=None, metadata=_help("default: data.seq_len"))
    rope_theta: float | None = None
    norm_eps: float | None = None
    tie_embeddings: bool | None = None
    init_std: float | None = None

    def resolve(self, *, vocab_size: int, seq_len: int, eos_id: int | None, bos_id: int | None = None) -> ModelConfig:
        base = ModelConfig.preset(self.preset)
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "preset" and getattr(self, f.name) is not None}
        changes.setdefault("vocab_size", vocab_size)
        changes.setdefault("max_seq_len", seq_len)
        if "dim" in changes or "n_heads" in changes:
            changes.setdefault("head_dim", 0)  # derive from the new dim / n_heads
        return base.replace(**changes, eos_id=eos_id if eos_id is not None and eos_id < changes["vocab_size"] else None,
                            bos_id=bos_id if bos_id is not None and bos_id < changes["vocab_size"] else None)


@dataclass
class DataSection:
    shards: Path = field(default=Path("runs/prepare/data"), metadata=_help("token shard directory (index.json)"))
    seq_len: int = field(default=256, metadata=_help("tokens per training window"))
    tokenizer: Path | None = field(default=None, metadata=_help(
        "tokenizer.json to check against the shards' tokenizer hash and to ship with the model "
        "(default: the shard directory's tokenizer.json, if any)"))

    def validate(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {self.seq_len}")


@dataclass
class OptimSection:
    lr: float = field(default=3e-3, metadata=_help("peak learning rate"))
    min_lr_ratio: float = field(default=0.1, metadata=_help("final learning rate as a fraction of lr"))
    schedule: Literal["cosine", "wsd", "constant"] = field(default="cosine", metadata=_help(
        "warmup then cosine decay, warmup-stable-decay, or warmup then constant"))
    warmup_steps: int = field(default=20, metadata=_help("linear warmup steps"))
    decay_fraction: float = field(default=0.2, metadata=_help("wsd: fraction of the steps spent decaying"))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW decay of matrices (never norms, biases, embeddings)"))
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = field(default=1.0, metadata=_help("clip the global gradient norm (0: off)"))
    fused: bool = field(default=True, metadata=_help("fused AdamW where torch supports it"))

    def validate(self) -> None:
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("lr must be positive and min_lr_ratio in [0, 1]")
        if self.warmup_steps < 0 or not 0 < self.decay_fraction <= 1:
            raise ValueError("warmup_steps must be >= 0 and decay_fraction in (0, 1]")


@dataclass
class PretrainConfig:
    out_dir: Path = field(default=Path("runs/pretrain"), metadata=_help(
        "run directory: ckpt/, model/, metrics.jsonl, loss.png"))
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    steps: int = field(default=200, metadata=_help("optimizer steps"))
    batch_size: int = field(default=16, metadata=_help("sequences per optimizer step, over all processes"))
    micro_batch: int = field(default=16, metadata=_help("sequences per forward pass per process"))
    seed: int = field(default=1337, metadata=_help("seed of the weights and the data windows"))
    eval_every: int = field(default=50, metadata=_help("validation loss every N steps (0: only at the end)"))
    eval_tokens: int = field(default=32768, metadata=_help("validation tokens per evaluation"))
    save_every: int = field(default=100, metadata=_help("checkpoint every N steps (0: only at the end)"))
    keep_last: int = field(default=2, metadata=_help("complete checkpoints kept"))
    resume: bool = field(default=False, metadata=_help("continue from the newest complete checkpoint in out_dir/ckpt"))
    log_every: int = field(default=10, metadata=_help("metrics.jsonl record every N steps"))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda, cuda:N"))
    precision: Literal["auto", "fp32", "bf16"] = field(default="auto", metadata=_help(
        "auto: bf16 autocast on GPU, fp32 on CPU"))
    compile: bool = field(default=False, metadata=_help("torch.compile the model"))
    activation_checkpointing: bool = field(default=False, metadata=_help("recompute blocks in backward to save memory"))
    deterministic: bool = field(default=False, metadata=_help("deterministic algorithms (bit-exact resume on CPU)"))
    parallel: Literal["ddp", "fsdp"] = field(default="ddp", metadata=_help("under torchrun: DDP or FSDP2 fully_shard"))
    on_nonfinite: Literal["skip", "halt"] = field(default="skip", metadata=_help(
        "a NaN/inf loss or gradient: skip the update, or stop the run"))
    max_skips: int = field(default=10, metadata=_help("halt after this many consecutive skipped steps"))
    save_model: bool = field(default=True, metadata=_help("write out_dir/model (HF format) at the end"))

    def validate(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.micro_batch <= 0:
            raise ValueError("steps, batch_size and micro_batch must be positive")
        if self.keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {self.keep_last}")
        if min(self.eval_every, self.save_every, self.eval_tokens) < 0 or self.log_every <= 0:
            raise ValueError("eval_every, save_every and eval_tokens must be >= 0 and log_every positive")

    def grad_accum(self, world_size: int) -> int:
        per_step = self.micro_batch * world_size
        if self.batch_size % per_step:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch x processes "
                             f"({self.micro_batch} x {world_size}); change batch_size or micro_batch")
        return self.batch_size // per_step
