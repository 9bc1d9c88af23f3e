"""`train_bpe`: byte-level BPE training over files or texts, counting in C++ threads.

Inputs. `files_or_texts` is one item, a list/tuple of items, or any other iterable (a generator
is consumed lazily, as a stream of documents). A `pathlib.Path` is a file, directory (every file
under it) or glob, and one that matches nothing is an error. `bytes` are UTF-8 text. A `str` from a
stream is always a document's text (a web document may well look like a path). A `str` given
directly or in a list/tuple is a path/glob when it names an existing path, or has no white space
and looks like one (a '/', a glob character or a file extension; missing ones are errors), and a
document's text otherwise.

Pass 1 (count) streams the corpus: files are read in ~1 MiB pieces cut where no pre-token can
span the cut (see bpe::is_safe_cut), pieces and texts are grouped into ~16 MiB batches (by size,
so the result is the same for any thread count) and counted by `num_threads` C++ threads. Memory
is bounded by `max_words` distinct words (about 60 bytes each while counting, ~100 bytes each
while merging): when the table overflows, the rarest words are dropped (see
csrc/cpu/bpe_trainer.h); counts are exact until then, and `TrainStats.prunes` says whether it
happened. A piece of 64 MiB with no safe cut (e.g. one enormous line of CJK text) is cut at a
character boundary, which can split one pre-token in two.

Invalid UTF-8 in a file is an error naming the file and byte offset (`errors="strict"`, the
default), or is replaced by U+FFFD like Python's bytes.decode (`errors="replace"`).

Pass 2 (merge) runs the incremental merge loop in C++ (highest count first; ties go to the
smallest (left id, right id)). Ids: 0..255 are the bytes, 256.. the merges in order, then the
special tokens. Training stops early when no pair occurs `min_frequency` times.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from fastllm import _ext
from fastllm.tokenizer.bpe import AddedToken, Tokenizer, default_threads, replace_surrogates
from fastllm.tokenizer.patterns import PATTERN_IDS, check_pattern
from fastllm.utils.errors import ConfigError, InputFormatError
from fastllm.utils.progress import byte_progress, progress

DEFAULT_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>")
DEFAULT_MAX_WORDS = 4_000_000
PIECE_BYTES = 1 << 20
BATCH_BYTES = 16 << 20
MAX_UNCUT_BYTES = 64 << 20
MERGES_PER_CALL = 64


@dataclass
class TrainStats:
    files: int = 0
    texts: int = 0
    bytes: int = 0
    words: int = 0             # pre-tokens counted
    distinct_words: int = 0
    prunes: int = 0            # times the word table overflowed max_words
    prune_threshold: int = 0   # largest count dropped by a prune
    merges: int = 0
    vocab_size: int = 0
    count_seconds: float = 0.0
    merge_seconds: float = 0.0
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def train_bpe(files_or_texts, vocab_size: int, *, min_frequency: int = 2,
              special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS, pattern: str = "llama3",
              num_threads: int | None = None, max_words: int = DEFAULT_MAX_WORDS,
              errors: Literal["strict", "replace"] = "strict") -> Tokenizer:
    """Trains a byte-level BPE tokenizer with `vocab_size` tokens (256 bytes + merges + specials)."""
    return train_bpe_with_stats(files_or_texts, vocab_size, min_frequency=min_frequency,
                                special_tokens=special_tokens, pattern=pattern, num_threads=num_threads,
                                max_words=max_words, errors=errors)[0]


def train_bpe_with_stats(files_or_texts, vocab_size: int, *, min_frequency: int = 2,
                         special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS, pattern: str = "llama3",
                         num_threads: int | None = None, max_words: int = DEFAULT_MAX_WORDS,
                         errors: Literal["strict", "replace"] = "strict") -> tuple[Tokenizer, TrainStats]:
    specials = _check_options(vocab_size, min_frequency, special_tokens, pattern, max_words, errors)
    threads = default_threads() if num_threads is None else max(1, int(num_threads))
    bpe = _ext.cpu().bpe
    stats = TrainStats()
    counter = bpe.WordCounter(PATTERN_IDS[pattern], [s.encode("utf-8") for s in specials], max_words)
    start = time.perf_counter()
    _count(counter, files_or_texts, threads, errors, stats, [t.encode('utf-8') for t in specials], pattern)
    stats.count_seconds = time.perf_counter() - start
    if counter.total_words == 0:
        where = ", ".join(stats.sources[:3]) or "the given texts"
        raise InputFormatError(f"{where}: the corpus is empty (no text to train on); check the input files")
    stats.words, stats.distinct_words = counter.total_words, counter.num_words
    stats.prunes, stats.prune_threshold = counter.prunes, counter.prune_threshold

    start = time.perf_counter()
    trainer = bpe.Trainer(counter, min_frequency)
    del counter
    merges = _merge(trainer, vocab_size - 256 - len(specials))
    stats.merge_seconds = time.perf_counter() - start

    tokens: list[bytes | None] = [bytes([b]) for b in range(256)]
    for a, b in merges:
        tokens.append(tokens[a] + tokens[b])
    added = [AddedToken(s, len(tokens) + i) for i, s in enumerate(specials)]
    tok = Tokenizer(tokens, merges, added, pattern=pattern)
    stats.merges, stats.vocab_size = len(merges), tok.vocab_size
    return tok, stats


def _check_options(vocab_size, min_frequency, special_tokens, pattern, max_words, errors) -> list[str]:
    try:
        check_pattern(pattern)
    except ValueError as exc:
        raise ConfigError(f"pattern: {exc}") from None
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ConfigError(f"special_tokens: {s!r} is not a non-empty string")
    if len(set(specials)) != len(specials):
        raise ConfigError("special_tokens: the list has duplicates")
    floor = 256 + len(specials)
    if not isinstance(vocab_size, int) or vocab_size < floor:
        raise ConfigError(f"vocab_size: {vocab_size} is below the {floor} tokens every byte-level vocabulary needs "
                          f"(256 bytes + {len(specials)} special tokens); choose at least {floor}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ConfigError(f"min_frequency: {min_frequency!r} must be an integer >= 1")
    if max_words < 1000:
        raise ConfigError(f"max_words: {max_words} is too small to train on; use at least 1000")
    if errors not in ("strict", "replace"):
        raise ConfigError(f"errors: {errors!r} must be 'strict' or 'replace'")
    return specials


# ---------------------------------------------------------------------------------------------
# Pass 1: counting
# ---------------------------------------------------------------------------------------------
def _count(counter, files_or_texts, threads: int, errors: str, stats: TrainStats, specials: list[bytes],
           pattern: str) -> None:
    if isinstance(files_or_texts, str | bytes | os.PathLike) or not isinstance(files_or_texts, Iterable):
        files_or_texts = [files_or_texts]
    total = None
    if isinstance(files_or_texts, list | tuple):  # resolve up front: missing files fail early
        items = [_resolve(item) for item in files_or_texts]
        total = sum(f.stat().st_size for item in items if isinstance(item, list) for f in item) or None
    else:
        items = (_resolve(item, stream=True) for item in files_or_texts)
    batch, batch_bytes = [], 0
    with byte_progress(desc="counting words", total=total) as bar:
        for segment in _segments(items, errors, stats, specials, pattern):
            batch.append(segment)
            batch_bytes += len(segment)
            if batch_bytes >= BATCH_BYTES:
                _count_batch(counter, batch, threads)
                bar.update(batch_bytes)
                batch, batch_bytes = [], 0
        if batch:
            _count_batch(counter, batch, threads)
            bar.update(batch_bytes)


def _count_batch(counter, batch: list, threads: int) -> None:
    try:
        counter.count(batch, threads)
    except UnicodeEncodeError:
        counter.count([replace_surrogates(s) if isinstance(s, str) else s for s in batch], threads)


def _resolve(item, stream: bool = False) -> list[Path] | str:
    """A list of files for a path-like item, or the item itself when it is a text."""
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    if isinstance(item, os.PathLike):
        return _expand(os.fspath(item))
    if not isinstance(item, str):
        raise ConfigError(f"input: {type(item).__name__} is neither a path nor a text")
    if stream:
        return item
    if os.path.exists(item) or _looks_like_path(item):
        return _expand(item)
    return item


def _looks_like_path(item: str) -> bool:
    if not item or len(item) > 4096 or any(c.isspace() for c in item):
        return False
    return any(c in item for c in "/\\*?[") or re.search(r"\.[A-Za-z0-9]{1,8}$", item) is not None


def _expand(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputFormatError(f"{pattern}: directory holds no files")
        return files
    if path.is_file():
        return [path]
    if any(c in pattern for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise InputFormatError(f"{pattern}: no file matches this pattern")
        return files
    raise InputFormatError(f"{pattern}: no such file or directory")


def _segments(items: Iterable[list[Path] | str], errors: str, stats: TrainStats,
              specials: list[bytes], pattern: str) -> Iterator[bytes | str]:
    for item in items:
        if isinstance(item, list):
            for path in item:
                stats.files += 1
                stats.sources.append(str(path))
                yield from _file_segments(path, errors, stats, specials, pattern)
        else:
            stats.texts += 1
            stats.bytes += len(item)
            yield item


def _file_segments(path: Path, errors: str, stats: TrainStats, specials: list[bytes],
                   pattern: str) -> Iterator[bytes | str]:
    last_safe_cut, pattern_id = _ext.cpu().bpe.last_safe_cut, PATTERN_IDS[pattern]
    longest = max((len(s) for s in specials), default=0)
    offset = 0
    pending = b""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        while True:
            block = handle.read(PIECE_BYTES)
            pending += block
            if block and len(pending) < PIECE_BYTES:
                continue
            if not block:
                if pending:
                    yield _checked(pending, path, offset, errors)
                    stats.bytes += len(pending)
                return
            # keep the longest special token's length after the cut in view, to see one straddling it
            cut = last_safe_cut(pending, len(pending) - longest, pattern_id)
            if cut <= 0:
                if len(pending) < MAX_UNCUT_BYTES:
                    continue
                cut = _char_boundary(pending)
            cut = _outside_specials(pending, cut, specials)
            yield _checked(pending[:cut], path, offset, errors)
            stats.bytes += cut
            offset += cut
            pending = pending[cut:]


def _outside_specials(data: bytes, cut: int, specials: list[bytes]) -> int:
    """Moves a cut that falls inside a special token's text to that token's start, or to its end
    when it starts the piece (a special token may contain spaces or newlines, where safe cuts
    happen; the counter cuts specials out, so either edge of one is a safe place to cut)."""
    for special in specials:
        start = max(cut - len(special) + 1, 0)
        found = data.find(special, start, cut + len(special) - 1)
        if 0 <= found < cut:
            return found if found > 0 else len(special)
    return cut


def _char_boundary(data: bytes) -> int:
    """A cut before the last character's first byte, so no character is split."""
    cut = len(data) - 1
    while cut > 1 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return max(cut, 1)


def _checked(data: bytes, path: Path, offset: int, errors: str) -> bytes | str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if errors == "replace":
            return data.decode("utf-8", errors="replace")
        raise InputFormatError(f"{path}: invalid UTF-8 at byte {offset + exc.start} ({exc.reason}); fix the file or "
                               "pass errors='replace' (--errors=replace) to replace invalid bytes with U+FFFD") from None
    return data


# ---------------------------------------------------------------------------------------------
# Pass 2: merging
# ---------------------------------------------------------------------------------------------
def _merge(trainer, wanted: int) -> list[tuple[int, int]]:
    merges: list[tuple[int, int]] = []
    with progress(desc="merging pairs", total=wanted, unit="merge") as bar:
        while len(merges) < wanted:
            asked = min(MERGES_PER_CALL, wanted - len(merges))
            step = trainer.step(asked)
            merges.extend(step)
            bar.update(len(step))
            if len(step) < asked:
                break  # no pair reaches min_frequency any more
    return merges
