"""The C++ pre-tokenizer against `regex.findall` with the same pattern, and the Unicode tables
against their generator."""

from __future__ import annotations

import unicodedata

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_corpus import MULTILINGUAL, kjv_text, paragraphs, python_sources, shakespeare_files

from fastllm._ext import cpu
from fastllm.tokenizer import gen_unicode_tables
from fastllm.tokenizer.patterns import PATTERN_IDS, PATTERNS

COMPILED = {name: regex.compile(p) for name, p in PATTERNS.items()}


def ours(text: str, pattern: str) -> list[str]:
    return cpu().bpe.pretokenize(text, PATTERN_IDS[pattern])


def assert_same(text: str) -> None:
    for name, compiled in COMPILED.items():
        assert ours(text, name) == compiled.findall(text), (name, text)


# Characters where the patterns' alternatives meet: contraction letters (with the long s that
# folds to 's'), every class of white space, letters with combining marks, numbers of each kind.
TRICKY = list("aZ09 \t\n\r'sStTrReEvVlLmMdD.,!?-_#") + [
    "ſ", "é", "\u0301", "क", "ि", "्", "中", "😀", "\u3000", "\u00a0", "\u2028", "\u0085", "\x0b", "\x1c",
    "٣", "Ⅻ", "½", "²", "ǅ", "\u200d", "\ufe0f", "🏽", "\r\n"]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TRICKY), max_size=40).map("".join))
def test_tricky_alphabet_matches_regex(text):
    assert_same(text)


def assigned_in_table(c: str) -> bool:
    # The tables follow this Python's Unicode version; `regex` may know newer characters.
    return unicodedata.category(c) not in ("Cn", "Cs")


@settings(max_examples=600, deadline=None)
@given(st.text(st.characters(codec="utf-8").filter(assigned_in_table), max_size=60))
def test_arbitrary_unicode_matches_regex(text):
    assert_same(text)


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_multilingual_sentences(text):
    assert_same(text)


def test_long_whitespace_runs_and_edges():
    for text in ["", " ", "\n", "a", " " * 1000 + "x", "x" + " " * 1000, "\n" * 500 + " " * 500 + "y",
                 " \n \n  \t x", "\r\n\r\n", "'", "''s", "'S'T'RE'Ve'M'LL'D", " '", "x '", "1234567",
                 " 123", "a1b2", "\t\tfoo", "\u3000\u3000bar", "...\n\n\nfoo", " !!\n\r\n"]:
        assert_same(text)


def test_real_text():
    texts = [p.read_text(encoding="utf-8") for p in shakespeare_files()[:2]]
    texts += [kjv_text()[:300_000]] + [p.read_text(encoding="utf-8") for p in python_sources()]
    for text in texts:
        assert_same(text)
    assert len(paragraphs(texts[0])) > 10


def test_unicode_header_is_generated_from_this_python():
    header = gen_unicode_tables.HEADER_PATH.read_text(encoding="utf-8")
    version = cpu().bpe.unicode_version
    if version != unicodedata.unidata_version:
        pytest.skip(f"header holds Unicode {version}, this Python has {unicodedata.unidata_version}")
    assert header == gen_unicode_tables.render()


@pytest.mark.parametrize("name", list(PATTERNS))
def test_safe_cuts_do_not_change_pre_tokens(name):
    text = kjv_text()[:200_000] + "\n" + shakespeare_files()[0].read_text(encoding="utf-8")[:100_000]
    data = text.encode("utf-8")
    cut = cpu().bpe.last_safe_cut
    pieces, rest = [], data
    while len(rest) > 5000:
        c = cut(rest, len(rest) // 3, PATTERN_IDS[name])
        assert c > 0
        pieces.append(rest[:c])
        rest = rest[c:]
    pieces.append(rest)
    split = [t for piece in pieces for t in cpu().bpe.pretokenize(piece, PATTERN_IDS[name])]
    assert split == cpu().bpe.pretokenize(data, PATTERN_IDS[name])
    assert len(pieces) > 10


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TRICKY), max_size=30).map("".join), st.integers(0, 200))
def test_safe_cut_anywhere_keeps_pre_tokens(text, limit):
    # Every pattern: wherever last_safe_cut cuts, the two halves split as the whole does (GPT-2's
    # `\s+(?!\S)` makes "  \nx" differ from "  \n" + "x", so such a '\n' is no cut for it).
    data = text.encode("utf-8")
    for name, pid in PATTERN_IDS.items():
        c = cpu().bpe.last_safe_cut(data, limit, pid)
        if c > 0:
            whole = cpu().bpe.pretokenize(data, pid)
            assert cpu().bpe.pretokenize(data[:c], pid) + cpu().bpe.pretokenize(data[c:], pid) == whole, (name, c)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_invalid_utf8_bytes_are_split_safely(data):
    # Inputs are validated before they reach C++, but a stray byte must never be lost or crash.
    for name in PATTERNS:
        pieces = cpu().bpe.pretokenize(data, PATTERN_IDS[name])
        assert b"".join(pieces) == data and all(pieces)


def test_safe_cut_needs_the_pattern():
    # The cut rules differ per pattern (gpt2's "  \nx"), so no pattern is assumed.
    with pytest.raises(TypeError):
        cpu().bpe.last_safe_cut(b"ab cd", 3)
    assert [cpu().bpe.last_safe_cut(b"!  \nab", 5, pid) for pid in PATTERN_IDS.values()] == [4, -1, -1]
