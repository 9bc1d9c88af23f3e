"""`fastllm tokenizer train|encode|decode|info|export`: byte-level BPE from the command line.

    fastllm tokenizer train --input 'data/*.txt' --vocab-size 32768 --output runs/x/tokenizer/tokenizer.json
    fastllm tokenizer encode --tokenizer tokenizer.json --text "Hello world"
    fastllm tokenizer decode --tokenizer tokenizer.json --ids 9906,1917
    fastllm tokenizer info --tokenizer tokenizer.json
    fastllm tokenizer export --tokenizer tokenizer.json --format tiktoken --output ours.tiktoken
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastllm.cli.main import Command
from fastllm.utils.errors import ConfigError, InputFormatError


def _default_specials() -> list[str]:
    from fastllm.tokenizer.train import DEFAULT_SPECIAL_TOKENS

    return list(DEFAULT_SPECIAL_TOKENS)


@dataclass
class TrainConfig:
    input: list[str] = field(default_factory=list, metadata={"help": "files, directories or globs to train on"})
    vocab_size: int = field(default=32768, metadata={"help": "tokens in the vocabulary: 256 bytes + merges + specials"})
    output: Path = field(default=Path("tokenizer.json"), metadata={"help": "tokenizer.json to write"})
    min_frequency: int = field(default=2, metadata={"help": "never merge a pair seen fewer times"})
    special_tokens: list[str] = field(default_factory=_default_specials, metadata={"help": "special tokens"})
    pattern: Literal["llama3", "gpt2", "smollm"] = field(default="llama3", metadata={
        "help": "pre-tokenizer split: llama3, gpt2, or smollm (each digit alone, then gpt2)"})
    num_threads: int = field(default=0, metadata={"help": "counting threads (0 = torch/OMP/CPU count)"})
    max_words: int = field(default=4_000_000, metadata={"help": "distinct words kept while counting (memory cap)"})
    errors: Literal["strict", "replace"] = field(default="strict", metadata={"help": "invalid UTF-8: fail or U+FFFD"})

    def validate(self) -> None:
        if not self.input:
            raise ValueError("input: give at least one file, directory or glob (--input 'data/*.txt')")


def run_train(config: TrainConfig) -> int:
    from fastllm.tokenizer import train_bpe_with_stats

    tok, stats = train_bpe_with_stats([Path(p) for p in config.input], config.vocab_size,
                                      min_frequency=config.min_frequency, special_tokens=config.special_tokens,
                                      pattern=config.pattern, num_threads=config.num_threads or None,
                                      max_words=config.max_words, errors=config.errors)
    path = tok.save(config.output)
    pruned = f", word table pruned {stats.prunes}x (counts <= {stats.prune_threshold})" if stats.prunes else ""
    print(f"wrote {path}: {tok.vocab_size} tokens ({stats.merges} merges, {len(tok.special_tokens)} special), "
          f"pattern {tok.pattern}, hash {tok.hash()[:16]}")
    print(f"  {stats.files} files, {stats.bytes / 1e6:.1f} MB, {stats.words} words ({stats.distinct_words} distinct"
          f"{pruned}); counting {stats.count_seconds:.2f}s, merging {stats.merge_seconds:.2f}s")
    if stats.merges < config.vocab_size - 256 - len(config.special_tokens):
        print(f"  note: stopped early, no pair occurs {config.min_frequency}+ times; the corpus is too small "
              "for this vocabulary size")
    return 0


@dataclass
class EncodeConfig:
    tokenizer: Path = field(default=Path("tokenizer.json"), metadata={"help": "tokenizer.json or a .gguf file"})
    text: str | None = field(default=None, metadata={"help": "text to encode"})
    input: Path | None = field(default=None, metadata={"help": "UTF-8 file to encode (instead of --text)"})
    output: Path | None = field(default=None, metadata={"help": "write ids as .npy (uint32) instead of printing"})
    allowed_special: list[str] = field(default_factory=list, metadata={"help": "special tokens to encode as ids ('all')"})

    def validate(self) -> None:
        if (self.text is None) == (self.input is None):
            raise ValueError("give exactly one of --text or --input")


def run_encode(config: EncodeConfig) -> int:
    from fastllm.tokenizer import DisallowedSpecialTokenError, Tokenizer

    tok = Tokenizer.from_file(config.tokenizer)
    text = config.text if config.text is not None else _read_text(config.input)
    allowed = "all" if config.allowed_special == ["all"] else set(config.allowed_special)
    try:
        ids = tok.encode(text, allowed_special=allowed)
    except DisallowedSpecialTokenError as exc:
        where = config.input if config.input is not None else "--text"
        raise ConfigError(f"{where}: contains the special token {exc.token!r}; pass --allowed-special "
                          f"'{exc.token}' (or all) to encode it as its id") from None
    except ValueError as exc:
        raise ConfigError(f"--allowed-special: {exc}") from None
    if config.output is None:
        print(" ".join(map(str, ids)))
        return 0
    import numpy as np

    from fastllm.utils.atomic import atomic_write

    with atomic_write(config.output) as handle:
        np.save(handle, np.asarray(ids, dtype=np.uint32))
    print(f"wrote {config.output}: {len(ids)} tokens ({len(text.encode()) / max(len(ids), 1):.2f} bytes/token)")
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputFormatError(f"{path}: invalid UTF-8 at byte {exc.start}") from None


@dataclass
class DecodeConfig:
    tokenizer: Path = field(default=Path("tokenizer.json"), metadata={"help": "tokenizer.json or a .gguf file"})
    ids: list[int] = field(default_factory=list, metadata={"help": "token ids, comma separated"})


def run_decode(config: DecodeConfig) -> int:
    from fastllm.tokenizer import Tokenizer

    tok = Tokenizer.from_file(config.tokenizer)
    try:
        sys.stdout.write(tok.decode(config.ids) + "\n")
    except ValueError as exc:
        raise ConfigError(f"ids: {exc}") from None
    return 0


@dataclass
class InfoConfig:
    tokenizer: Path = field(default=Path("tokenizer.json"), metadata={"help": "tokenizer.json or a .gguf file"})
    json: bool = field(default=False, metadata={"help": "print JSON"})


def run_info(config: InfoConfig) -> int:
    from fastllm.tokenizer import Tokenizer

    tok = Tokenizer.from_file(config.tokenizer)
    report = {"path": str(config.tokenizer), "vocab_size": tok.vocab_size, "merges": len(tok.merges),
              "pattern": tok.pattern, "ignore_merges": tok.ignore_merges, "special_tokens": tok.special_tokens,
              "bos_id": tok.bos_id, "eos_id": tok.eos_id, "unk_id": tok.unk_id, "pad_id": tok.pad_id,
              "hash": tok.hash()}
    if config.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


@dataclass
class ExportConfig:
    tokenizer: Path = field(default=Path("tokenizer.json"), metadata={"help": "tokenizer.json or a .gguf file"})
    format: Literal["tiktoken", "gguf-fields"] = field(default="tiktoken",
                                                       metadata={"help": "tiktoken ranks file or GGUF fields as JSON"})
    output: Path = field(default=Path("tokenizer.tiktoken"), metadata={"help": "file to write"})


def run_export(config: ExportConfig) -> int:
    from fastllm.tokenizer import Tokenizer
    from fastllm.tokenizer.exports import write_tiktoken_file
    from fastllm.utils.atomic import write_json

    tok = Tokenizer.from_file(config.tokenizer)
    if config.format == "tiktoken":
        write_tiktoken_file(tok, config.output)
        print(f"wrote {config.output}; load it with tiktoken.load.load_tiktoken_bpe, with pat_str {_pattern(tok)}")
    else:
        write_json(config.output, tok.gguf_fields())
        print(f"wrote {config.output}")
    return 0


def _pattern(tok) -> str:
    from fastllm.tokenizer.patterns import PATTERNS

    return PATTERNS[tok.pattern]


COMMANDS = {
    "train": Command("Train a byte-level BPE tokenizer on files (HF tokenizer.json out).", TrainConfig, run_train),
    "encode": Command("Encode text or a file to token ids.", EncodeConfig, run_encode),
    "decode": Command("Decode token ids to text.", DecodeConfig, run_decode),
    "info": Command("Show a tokenizer's size, pattern, special tokens and hash.", InfoConfig, run_info),
    "export": Command("Export to tiktoken's ranks file or GGUF tokenizer fields (JSON).", ExportConfig, run_export),
}
