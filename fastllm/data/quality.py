"""Gopher (Rae et al. 2021) and C4 style quality filters. The statistics come from C++
(csrc/cpu/minhash_textstats.cpp) for a whole batch at once (`text_stats_ref` is their reference
in Python); this module compares them with the configured thresholds and names the first filter a
document fails (its drop reason). Every threshold can be switched off with null."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastllm import _ext
from fastllm.data.minhash import default_threads
from fastllm.data.script import LOWER_TO_ASCII, allowed_script_fraction

GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]

# Column order of the C++ statistics (TextStat in csrc/cpu/minhash_ngrams.h).
STAT_NAMES = ("chars", "words", "word_chars", "alpha_words", "hash_symbols", "ellipses", "lines",
              "bullet_lines", "ellipsis_lines", "stop_words", "dup_lines", "dup_line_chars", "paragraphs",
              "dup_paragraphs", "dup_paragraph_chars", "top_ngram_2", "top_ngram_3", "top_ngram_4",
              "dup_ngram_5", "dup_ngram_6", "dup_ngram_7", "dup_ngram_8", "dup_ngram_9", "dup_ngram_10")
_COL = {name: i for i, name in enumerate(STAT_NAMES)}


@dataclass
class QualityConfig:
    enabled: bool = field(default=True, metadata={"help": "run the quality filters"})
    min_words: int | None = field(default=50, metadata={"help": "drop documents with fewer words"})
    max_words: int | None = field(default=100_000, metadata={"help": "drop documents with more words"})
    min_mean_word_length: float | None = field(default=3.0, metadata={"help": "in characters"})
    max_mean_word_length: float | None = field(default=10.0, metadata={"help": "in characters"})
    max_symbol_word_ratio: float | None = field(default=0.1, metadata={"help": "('#' + ellipses) per word"})
    max_bullet_lines: float | None = field(default=0.9, metadata={"help": "fraction of lines starting with "
                                                                          "a bullet"})
    max_ellipsis_lines: float | None = field(default=0.3, metadata={"help": "fraction of lines ending with "
                                                                            "an ellipsis"})
    min_alpha_words: float | None = field(default=0.8, metadata={"help": "fraction of words with a letter"})
    min_stop_words: int | None = field(default=2, metadata={"help": "stop-word occurrences required"})
    stop_words: list[str] = field(default_factory=lambda: list(GOPHER_STOP_WORDS),
                                  metadata={"help": "stop words (lowercase)"})
    max_dup_lines: float | None = field(default=0.3, metadata={"help": "fraction of lines repeating an "
                                                                       "earlier line"})
    max_dup_line_chars: float | None = field(default=0.2, metadata={"help": "their share of characters"})
    max_dup_paragraphs: float | None = field(default=0.3, metadata={"help": "fraction of repeated "
                                                                            "paragraphs"})
    max_dup_paragraph_chars: float | None = field(default=0.2, metadata={"help": "their share of characters"})
    max_top_ngram: dict[int, float] = field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16},
                                            metadata={"help": "n -> max character share of the most "
                                                              "frequent n-gram (n in 2..4)"})
    max_dup_ngram: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        metadata={"help": "n -> max character share of repeated n-grams (n in 5..10)"})
    forbidden_substrings: list[str] = field(default_factory=lambda: ["lorem ipsum"],
                                            metadata={"help": "C4: drop documents containing these "
                                                              "(case-insensitive)"})
    scripts: list[str] = field(default_factory=list, metadata={"help": "allowed Unicode scripts (e.g. "
                                                                       "[Devanagari]); empty: no check"})
    min_script_fraction: float = field(default=0.5, metadata={"help": "letters in allowed scripts"})

    def validate(self) -> None:
        for n in self.max_top_ngram:
            if not 2 <= n <= 4:
                raise ValueError(f"max_top_ngram: n must be in 2..4, got {n}")
        for n in self.max_dup_ngram:
            if not 5 <= n <= 10:
                raise ValueError(f"max_dup_ngram: n must be in 5..10, got {n}")


def text_stats(texts: Sequence[str], stop_words: Sequence[str] = GOPHER_STOP_WORDS,
               num_threads: int | None = None) -> np.ndarray:
    """(len(texts), len(STAT_NAMES)) float64 statistics (see STAT_NAMES)."""
    texts = list(texts)
    out = np.zeros((len(texts), len(STAT_NAMES)), dtype=np.float64)
    if texts:
        _ext.cpu().minhash.text_stats(texts, [w.lower() for w in stop_words], out.ctypes.data,
                                      num_threads or default_threads())
    return out


# ---- the reference for text_stats: the same statistics with Python strings, one text at a time ----

_ASCII_SPACE = " \t\n\x0b\x0c\r"
_ASCII_PUNCT = "".join(chr(c) for c in range(128) if not chr(c).isalnum() and chr(c) not in _ASCII_SPACE)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_BULLETS = set("-*\u2022\u2023\u25e6\u25aa\u25cf\u25cb\u00b7\u2043\u25a0")


def _is_letter(ch: str) -> bool:
    """The C++ letter test: ASCII letters, and non-ASCII outside the symbol and emoji ranges."""
    cp = ord(ch)
    if cp < 0x80:
        return "a" <= ch.lower() <= "z"
    return not (cp < 0xC0 or cp in (0xD7, 0xF7) or 0x2000 <= cp <= 0x2BFF or 0x3000 <= cp <= 0x303F
                or 0xFF00 <= cp <= 0xFF0F or cp >= 0x1F000)


def _line_stats(text: str, out: dict[str, float]) -> None:
    seen_lines: set[str] = set()
    seen_paragraphs: set[str] = set()
    paragraphs: list[tuple[int, int]] = []
    start, paragraph = 0, None
    for line in text.split("\n"):
        b = start + len(line) - len(line.lstrip(_ASCII_SPACE))
        e = start + len(line.rstrip(_ASCII_SPACE))
        start += len(line) + 1
        if b >= e:
            if paragraph:
                paragraphs.append(paragraph)
            paragraph = None
            continue
        paragraph = (paragraph[0] if paragraph else b, e)
        trimmed = text[b:e]
        out["lines"] += 1
        out["bullet_lines"] += trimmed[0] in _BULLETS
        out["ellipsis_lines"] += trimmed.endswith(("...", "\u2026"))
        if trimmed in seen_lines:
            out["dup_lines"] += 1
            out["dup_line_chars"] += len(trimmed)
        seen_lines.add(trimmed)
    if paragraph:
        paragraphs.append(paragraph)
    for b, e in paragraphs:
        out["paragraphs"] += 1
        if text[b:e] in seen_paragraphs:
            out["dup_paragraphs"] += 1
            out["dup_paragraph_chars"] += e - b
        seen_paragraphs.add(text[b:e])


def _repetition_stats(words: list[str], out: dict[str, float]) -> None:
    total = out["word_chars"]
    if total <= 0:
        return
    for n in (2, 3, 4):
        counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        top = max(counts.values(), default=0)
        if top >= 2:
            chars = max(sum(map(len, gram)) for gram, count in counts.items() if count == top)
            out[f"top_ngram_{n}"] = float(top) * float(chars) / total
    for n in range(5, 11):
        seen: set[tuple[str, ...]] = set()
        covered = [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            if gram in seen:
                covered[i:i + n] = [True] * n
            seen.add(gram)
        out[f"dup_ngram_{n}"] = float(sum(len(w) for w, c in zip(words, covered) if c)) / total


def text_stats_ref(text: str, stop_words: Sequence[str] = GOPHER_STOP_WORDS) -> list[float]:
    """One row of text_stats, from Python strings: words split on ASCII whitespace, "chars" code
    points; exact string comparisons where the C++ compares 64-bit hashes."""
    out = dict.fromkeys(STAT_NAMES, 0.0)
    out["chars"] = len(text)
    out["hash_symbols"] = text.count("#")
    out["ellipses"] = len(re.findall(r"\.{3,}", text)) + text.count("\u2026")
    _line_stats(text, out)
    words = [w for w in re.split(f"[{_ASCII_SPACE}]+", text) if w]
    stop = {w.lower() for w in stop_words} - {""}
    out["words"] = len(words)
    out["word_chars"] = sum(map(len, words))
    out["alpha_words"] = sum(any(map(_is_letter, w)) for w in words)
    out["stop_words"] = sum(w.strip(_ASCII_PUNCT).translate(_ASCII_LOWER) in stop for w in words) if stop else 0
    _repetition_stats(words, out)
    return [float(out[name]) for name in STAT_NAMES]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


class QualityFilter:
    """`reasons(texts)` -> a drop reason per text, or None to keep it."""

    def __init__(self, config: QualityConfig, num_threads: int | None = None):
        self.config = config
        self.num_threads = num_threads
        self._scripts = tuple(config.scripts)

    def _checks(self, s: np.ndarray) -> list[tuple[str, np.ndarray]]:
        c = self.config
        col = lambda name: s[:, _COL[name]]
        words = col("words")
        mean_len = _ratio(col("word_chars"), words)
        checks = [
            ("too_few_words", c.min_words, lambda t: words < t),
            ("too_many_words", c.max_words, lambda t: words > t),
            ("mean_word_length_low", c.min_mean_word_length, lambda t: mean_len < t),
            ("mean_word_length_high", c.max_mean_word_length, lambda t: mean_len > t),
            ("symbol_ratio", c.max_symbol_word_ratio,
             lambda t: _ratio(col("hash_symbols") + col("ellipses"), words) > t),
            ("bullet_lines", c.max_bullet_lines, lambda t: _ratio(col("bullet_lines"), col("lines")) > t),
            ("ellipsis_lines", c.max_ellipsis_lines, lambda t: _ratio(col("ellipsis_lines"), col("lines")) > t),
            ("alpha_words", c.min_alpha_words, lambda t: _ratio(col("alpha_words"), words) < t),
            ("stop_words", c.min_stop_words, lambda t: col("stop_words") < t),
            ("dup_lines", c.max_dup_lines, lambda t: _ratio(col("dup_lines"), col("lines")) > t),
            ("dup_line_chars", c.max_dup_line_chars, lambda t: _ratio(col("dup_line_chars"), col("chars")) > t),
            ("dup_paragraphs", c.max_dup_paragraphs,
             lambda t: _ratio(col("dup_paragraphs"), col("paragraphs")) > t),
            ("dup_paragraph_chars", c.max_dup_paragraph_chars,
             lambda t: _ratio(col("dup_paragraph_chars"), col("chars")) > t),
        ]
        out = [(name, test(threshold)) for name, threshold, test in checks if threshold is not None]
        out += [(f"top_ngram_{n}", col(f"top_ngram_{n}") > t) for n, t in sorted(c.max_top_ngram.items())]
        out += [(f"dup_ngram_{n}", col(f"dup_ngram_{n}") > t) for n, t in sorted(c.max_dup_ngram.items())]
        return out

    def reasons(self, texts: Sequence[str]) -> list[str | None]:
        if not self.config.enabled or not texts:
            return [None] * len(texts)
        stats = text_stats(texts, self.config.stop_words, self.num_threads)
        result: list[str | None] = [None] * len(texts)
        for name, failed in self._checks(stats):
            for i in np.flatnonzero(failed):
                if result[i] is None:
                    result[i] = name
        self._text_checks(texts, result)
        return result

    def _text_checks(self, texts: Sequence[str], result: list[str | None]) -> None:
        """C4's forbidden substrings (`s in text.lower()`, decided in C++ where it can be), then scripts."""
        pending = [i for i, reason in enumerate(result) if reason is None]
        forbidden = [s.lower() for s in self.config.forbidden_substrings]
        if forbidden and pending:
            found = _ext.cpu().text.contains_any_lowered([texts[i] for i in pending], forbidden,
                                                         list(LOWER_TO_ASCII))
            for i, hit in zip(pending, found):
                if hit == -1:  # undecided in C++ (see csrc/cpu/text_search.h)
                    hit = any(s in texts[i].lower() for s in forbidden)
                if hit:
                    result[i] = "forbidden_substring"
        if self._scripts:
            for i in pending:
                if result[i] is None and allowed_script_fraction(texts[i], self._scripts) < self.config.min_script_fraction:
                    result[i] = "script"
