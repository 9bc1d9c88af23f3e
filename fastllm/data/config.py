"""PrepareConfig: everything `fastllm prepare` / `fastllm.data.prepare` does, as one typed config
(YAML sections map to the dataclasses below; see configs/prepare/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.data.blocklist import BlocklistConfig
from fastllm.data.decontam import DecontamConfig
from fastllm.data.normalize import NormalizeConfig
from fastllm.data.pii import PiiConfig
from fastllm.data.quality import QualityConfig


@dataclass
class SourceConfig:
    name: str = field(default="", metadata={"help": "source name (used in stats and mixing)"})
    paths: list[str] = field(default_factory=list, metadata={"help": "files, directories, globs; "
                                                                     "pkg:<package>/<glob> for installed data"})
    format: Literal["auto", "txt", "jsonl", "parquet"] = field(default="auto", metadata={"help": "file format"})
    txt_mode: Literal["file", "block"] = field(default="file", metadata={
        "help": ".txt: one document per file or per blank-line-separated block"})
    text_field: str = field(default="text", metadata={"help": "jsonl/parquet text field"})
    id_field: str | None = field(default=None, metadata={"help": "jsonl/parquet id field"})
    url_field: str | None = field(default=None, metadata={"help": "jsonl/parquet URL field (domain blocklist)"})
    weight: float | None = field(default=None, metadata={"help": "target share of training tokens; null: "
                                                                 "natural share"})
    max_record_bytes: int = field(default=32 << 20, metadata={"help": "larger records are quarantined"})

    def validate(self) -> None:
        if not self.name:
            raise ValueError("every source needs a name")
        if not self.paths:
            raise ValueError(f"source {self.name!r} has no paths")
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"source {self.name!r}: weight must be >= 0")
        if self.max_record_bytes < 1:
            raise ValueError(f"source {self.name!r}: max_record_bytes must be >= 1")


@dataclass
class DedupConfig:
    exact: bool = field(default=True, metadata={"help": "drop exact duplicates (hash of normalized text)"})
    near: bool = field(default=True, metadata={"help": "drop near duplicates (MinHash-LSH)"})
    threshold: float = field(default=0.8, metadata={"help": "Jaccard similarity that counts as duplicate"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations"})
    ngram: int = field(default=5, metadata={"help": "shingle length in units"})
    units: Literal["whitespace", "alnum", "chars"] = field(default="alnum", metadata={
        "help": "shingle units: whitespace words, alnum words (case/punctuation-insensitive), characters"})
    bands: int = field(default=0, metadata={"help": "LSH bands (0: chosen from threshold)"})
    rows: int = field(default=0, metadata={"help": "rows per band (0: chosen from threshold)"})
    verify: bool = field(default=True, metadata={"help": "keep an LSH candidate pair only if its estimated "
                                                         "Jaccard reaches the threshold"})
    seed: int = field(default=1, metadata={"help": "MinHash permutation seed"})

    def validate(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError("dedup.threshold must be in (0, 1)")
        if self.num_perm < 1 or self.ngram < 1:
            raise ValueError("num_perm and ngram must be >= 1")
        if (self.bands > 0) != (self.rows > 0) or self.bands * self.rows > self.num_perm:
            raise ValueError("dedup.bands and dedup.rows: set both (bands x rows <= num_perm) or neither")


TRAIN_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>")  # a tokenizer trained by prepare gets these


@dataclass
class TokenizerSection:
    path: str | None = field(default=None, metadata={"help": "tokenizer.json to tokenize with"})
    train_vocab_size: int = field(default=0, metadata={"help": "> 0: train a BPE tokenizer of this size on the "
                                                               "cleaned training split instead"})
    train_max_bytes: int = field(default=200_000_000, metadata={"help": "UTF-8 bytes of text used to train it, at most"})
    min_frequency: int = field(default=2, metadata={"help": "BPE training: minimum pair count"})
    pattern: str = field(default="llama3", metadata={"help": "BPE training: pre-tokenizer pattern"})

    def validate(self) -> None:
        if not self.path and self.train_vocab_size <= 0:
            raise ValueError("tokenizer: give a path or a train_vocab_size")
        if not self.path:  # checked here, not after the clean stage has run
            from fastllm.tokenizer.patterns import PATTERNS

            if self.pattern not in PATTERNS:
                raise ValueError(f"pattern: {self.pattern!r} is not one of {', '.join(PATTERNS)}")
            if self.train_vocab_size < 256 + len(TRAIN_SPECIAL_TOKENS):
                raise ValueError(f"train_vocab_size: {self.train_vocab_size} is below "
                                 f"{256 + len(TRAIN_SPECIAL_TOKENS)} (256 bytes + the special tokens)")
            if self.min_frequency < 1:
                raise ValueError("min_frequency must be >= 1")


@dataclass
class SplitConfig:
    val_fraction: float = field(default=0.01, metadata={"help": "share of groups held out for validation"})
    group_by: Literal["document", "file"] = field(default="document", metadata={
        "help": "hold out whole documents or whole input files"})
    val_files: list[str] = field(default_factory=list, metadata={
        "help": "file patterns (fnmatch on the path within its source) always held out; with these set, "
                "val_fraction is not used"})

    def validate(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ValueError("split.val_fraction must be in [0, 1)")


@dataclass
class MixConfig:
    total_tokens: int = field(default=0, metadata={"help": "training tokens after mixing (0: as many as the "
                                                           "sources hold)"})

    def validate(self) -> None:
        if self.total_tokens < 0:
            raise ValueError("total_tokens must be >= 0")


@dataclass
class ShardSection:
    max_tokens: int = field(default=1 << 27, metadata={"help": "tokens per shard file at most"})

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")


@dataclass
class PrepareConfig:
    out_dir: Path = field(default=Path("runs/prepare/data"), metadata={"help": "shards, stats.json, report.md"})
    sources: list[SourceConfig] = field(default_factory=list, metadata={"help": "input sources"})
    seed: int = field(default=1234, metadata={"help": "shuffle, split and mixing seed"})
    executor: Literal["local", "ray"] = field(default="local", metadata={"help": "local process pool or Ray"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address (none: start a local one)"})
    workers: int = field(default=0, metadata={"help": "parallel tasks (0: one per CPU)"})
    threads: int = field(default=0, metadata={"help": "native threads per task (0: CPUs / workers)"})
    task_bytes: int = field(default=64 << 20, metadata={"help": "input bytes grouped into one task"})
    batch_docs: int = field(default=512, metadata={"help": "documents per processing batch"})
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    blocklist: BlocklistConfig = field(default_factory=BlocklistConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    split: SplitConfig = field(default_factory=SplitConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    shards: ShardSection = field(default_factory=ShardSection)

    def validate(self) -> None:
        if not self.sources:
            raise ValueError("no sources; add at least one under `sources:`")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        weights = [s.weight for s in self.sources]
        if any(w is not None for w in weights) and any(w is None for w in weights):
            raise ValueError("give every source a weight, or none")
        if all(w is not None for w in weights) and sum(weights) <= 0:
            raise ValueError("source weights must not all be 0")
        for name in ("workers", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: automatic)")
        for name in ("task_bytes", "batch_docs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
