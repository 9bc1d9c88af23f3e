"""`fastllm pretrain --config configs/pretrain/tiny.yaml [--steps=100 ...]` (also under torchrun)."""

from __future__ import annotations

from fastllm.cli.main import Command
from fastllm.train.config import PretrainConfig


def run(config: PretrainConfig) -> int:
    from fastllm.train import pretrain

    pretrain(config)
    return 0


COMMANDS = {None: Command(
    "Pretrain a LLaMA-style model on token shards (fastllm prepare's output). Writes checkpoints, "
    "metrics.jsonl, loss.png and an HF-format model/ under out_dir; --resume continues the newest "
    "complete checkpoint. Launch with torchrun for DDP/FSDP2.", PretrainConfig, run)}
