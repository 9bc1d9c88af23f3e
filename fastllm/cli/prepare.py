"""`fastllm prepare`: raw text -> clean, deduplicated, redacted, decontaminated, mixed token shards."""

from __future__ import annotations

from fastllm.cli.main import Command
from fastllm.data.config import PrepareConfig


def run(config: PrepareConfig) -> int:
    from fastllm.data.pipeline import prepare

    out = prepare(config)
    print(f"shards, stats.json and report.md in {out}")
    return 0


COMMANDS = {None: Command("Read, clean, deduplicate, redact PII, decontaminate, mix and shard a corpus "
                          "(resumable; see configs/prepare/*.yaml).", PrepareConfig, run)}
