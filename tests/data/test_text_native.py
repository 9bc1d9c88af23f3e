"""The C++ text cleaning (fastllm._C.text, csrc/cpu/text_*.cpp, and the quality statistics of
csrc/cpu/minhash_textstats.cpp) against the Python references they replace, on hypothesis-generated
text drawn from the characters each step treats specially (controls, line breaks, Unicode spaces,
surrogates, combining marks, digits of every script, secret prefixes, repeated words) mixed with
ordinary ones, in every kind of Python string (Latin-1, UCS-2, UCS-4). No ISA-specific code: one
path to test."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastllm import _ext
from fastllm.data import pii
from fastllm.data.normalize import NormalizeConfig, Normalizer, normalize_ref
from fastllm.data.quality import GOPHER_STOP_WORDS, text_stats, text_stats_ref
from fastllm.data.script import LOWER_TO_ASCII

SPECIAL = ("\x00\x01\x08\t\n\x0b\x0c\r\x0e\x1b\x1c\x1f \x7f\x80\x85\x9f\xa0\u1680\u2000\u200a\u200b\u200c"
           "\u200e\u200f\u2028\u2029\u202f\u205f\u2060\u3000\ufeff\ufffe\uffff\ud800\udfff\U0001f600"
           "e\u0301\u00e9\u00c3\u00a9\u20ac")
ORDINARY = "ab Z09.-:@#"
texts = st.text(alphabet=st.sampled_from(SPECIAL + ORDINARY * 3), max_size=60)

FLAG_NAMES = ("nfc", "remove_control", "whitespace", "collapse_spaces", "fix_mojibake")
CONFIGS = [NormalizeConfig(**dict(zip(FLAG_NAMES, bits))) for bits in itertools.product([False, True], repeat=5)]


@settings(max_examples=300, deadline=None)
@given(text=texts)
def test_normalize_matches_reference(text):
    for config in CONFIGS:
        assert Normalizer(config)(text) == normalize_ref(text, config), config


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(texts, max_size=8))
def test_normalize_many_is_per_text(batch):
    norm = Normalizer(NormalizeConfig())
    assert norm.normalize_many(batch) == [normalize_ref(t, norm.config) for t in batch]


@pytest.mark.parametrize("text", ["", " ", "\n\n\n", "a  b \t\nc\n\n\n\nd ", "\r\r\n\r", "\x85\u2028x\u2029",
                                  "\u3000a\u00a0 b\u2003", "\x00", "x\x0b", "\ud800 ", "\U0001f600  \n",
                                  "plain text, nothing to do"])
def test_normalize_edge_cases(text):
    for config in CONFIGS:
        assert Normalizer(config)(text) == normalize_ref(text, config)


def test_normalize_returns_unchanged_text_as_is():
    text = "Already clean text.\nTwo lines."
    assert Normalizer(NormalizeConfig())(text) is text


# ---- PII anchors and digit windows (csrc/cpu/text_pii.cpp) -------------------------------------

PII_PIECES = ["0", "7", "9", "\u0966", "\u096f", "\uff11", "\U0001d7ce", "\u00b2", " ", "-", ".", "/", "(", ")",
              ":", "::", "@", "=", "a", "F", "g", "z", "K", "\u212a", "\u0130", "\n", "x" * 30, "1" * 20,
              "AKIA", "ASIA", "eyJ", "sk-", "ghp_", "github_pat_", "xox", "AIza", "k_live_", "PRIVATE KEY",
              "key", "KEY", "Secret", "toKen", "passw", "PASSW", "se", "cret", "ab:cd", "f:1"]
pii_texts = st.lists(st.sampled_from(PII_PIECES), max_size=40).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=pii_texts)
def test_pii_scan_matches_regex_references(text):
    bits, windows = pii._scan(text)
    assert windows == pii._digit_windows_ref(text)
    assert bits == pii._anchor_bits_ref(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_pii_scan_on_any_text(text):
    bits, windows = pii._scan(text)
    assert windows == pii._digit_windows_ref(text)
    assert bits == pii._anchor_bits_ref(text)


@settings(max_examples=300, deadline=None)
@given(text=pii_texts)
def test_detect_matches_reference(text):
    for types in (pii.PII_TYPES, ["SECRET"], ["PHONE", "IP"]):
        assert pii.detect(text, types) == pii.detect_ref(text, types)
        assert pii.redact(text, types) == pii.redact_ref(text, types)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(pii_texts, max_size=8))
def test_redact_many_matches_reference(batch):
    for types in (pii.PII_TYPES, ["EMAIL", "ID_NUMBER"]):
        assert pii.redact_many(batch, types) == [pii.redact_ref(t, types) for t in batch]


@pytest.mark.parametrize("part", ["pii", "web", "tricky"])
def test_redact_many_on_golden_corpus(part):
    from tests.data.test_clean_golden import corpus

    texts = list(corpus(part))
    assert pii.redact_many(texts) == [pii.redact(t) for t in texts]


@pytest.mark.parametrize("text", ["", "1", "12", "123", "1234", "1.2.3", "1 - 2", "(555) 123-4567 and 1..2",
                                  "9" * 200, "x" * 100 + "1 2 3" + "y" * 100, "\u0967\u0968-\u0969\u096a"])
def test_pii_scan_edge_cases(text):
    assert pii._scan(text) == (pii._anchor_bits_ref(text), pii._digit_windows_ref(text))


# ---- forbidden substrings (csrc/cpu/text_search.cpp) ---------------------------------------------

def test_lower_to_ascii_matches_this_pythons_unicode_data():
    expected = tuple(c for c in range(0x80, 0x110000) if any(ord(x) < 0x80 for x in chr(c).lower()))
    assert LOWER_TO_ASCII == expected


SEARCH_PIECES = ["lorem", "LOREM", "Lorem", " ", "ipsum", "IpSuM", "\u0130", "\u212a", "k", "i\u0307", "\u00e9",
                 "\u03a3", "\U0001f600", "x", "lo", "rem ip", "sum", "\n", "@", "`", "[", "{", "_", "\x7f", "K"]
search_texts = st.lists(st.sampled_from(SEARCH_PIECES), max_size=40).map("".join)
NEEDLE_SETS = [["lorem ipsum"], ["ipsum", "kx"], ["k"], ["i\u0307"], [""], ["\u00e9"], ["lorem ipsum", "\u03c3"],
               ["@"], ["[k"], ["_x", "`"], ["{"], ["x\x7f"]]


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(search_texts, max_size=6))
def test_contains_any_lowered_matches_python(batch):
    for needles in NEEDLE_SETS:
        found = _ext.cpu().text.contains_any_lowered(batch, needles, list(LOWER_TO_ASCII))
        for text, hit in zip(batch, found):
            expected = any(s in text.lower() for s in needles)
            assert hit == -1 or bool(hit) == expected, (text, needles)
            assert hit != -1 or not text.isascii() or not all(s.isascii() for s in needles)


# ---- quality statistics (csrc/cpu/minhash_textstats.cpp) ----------------------------------------

STATS_PIECES = ["the", "The", "THE", "(the)", "and,", "of", "to", "be", "with", "that", "have", "lord", "LORD",
                "said", "unto", "caf\u00e9", "\u092d\u093e\u0930\u0924", "\U0001f600", "#", "...", "....", "..",
                "\u2026", "- ", "* ", "\u2022", "x" * 12, "word.", "42", "\u00d7", " ", " ", " ", "\n", "\n",
                "\n\n", "\t", " \n ", "\r\n", "\x0b", "\x1c", "\u00a0"]
stats_texts = st.lists(st.sampled_from(STATS_PIECES), max_size=120).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(stats_texts, min_size=1, max_size=6))
def test_text_stats_match_reference(batch):
    got = text_stats(batch, num_threads=1)
    for text, row in zip(batch, got):
        assert row.tolist() == text_stats_ref(text), text


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
       stop_words=st.sampled_from([GOPHER_STOP_WORDS, [], ["", "a"], ["extraordinarily"], ["\u00e9t\u00e9"]]))
def test_text_stats_match_reference_on_any_text(text, stop_words):
    assert text_stats([text], stop_words, num_threads=1)[0].tolist() == text_stats_ref(text, stop_words)


def test_text_stats_on_repetitive_text():
    text = " ".join(["and the lord said unto moses"] * 40 + ["the end of it all ..."] * 3)
    assert text_stats([text], num_threads=1)[0].tolist() == text_stats_ref(text)
