"""Pretraining: shard loader, AdamW and schedules, checkpoints with exact resume, DDP/FSDP2."""

from fastllm.train.config import PretrainConfig
from fastllm.train.trainer import TrainingHalted, TrainResult, pretrain

__all__ = ["PretrainConfig", "TrainResult", "TrainingHalted", "pretrain"]
