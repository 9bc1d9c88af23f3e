"""fastllm.data: raw text -> clean, deduplicated, redacted, decontaminated, mixed token shards.

    from fastllm.data import PrepareConfig, prepare, ShardSet
    shard_dir = prepare(config)          # see configs/prepare/*.yaml and `fastllm prepare --help`
    shards = ShardSet.open(shard_dir)

Stages (each also usable on its own): readers, normalize, quality (+ script), blocklist, decontam,
pii (`redact(text) -> (text, counts)`), dedup (exact + MinHash-LSH over minhash.py), tokens, mix,
shards (`write_shards`, `ShardSet`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PrepareConfig", "prepare", "ShardSet", "write_shards"]

if TYPE_CHECKING:
    from fastllm.data.config import PrepareConfig
    from fastllm.data.pipeline import prepare
    from fastllm.data.shards import ShardSet, write_shards


def __getattr__(name: str) -> Any:  # lazy: `import fastllm.data.pii` should not import the pipeline
    if name == "PrepareConfig":
        from fastllm.data.config import PrepareConfig

        return PrepareConfig
    if name == "prepare":
        from fastllm.data.pipeline import prepare

        return prepare
    if name in ("ShardSet", "write_shards"):
        from fastllm.data import shards

        return getattr(shards, name)
    raise AttributeError(f"module 'fastllm.data' has no attribute {name!r}")
