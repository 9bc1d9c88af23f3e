"""The C++ text cleaning (fastllm._C.text, csrc/cpu/text_*.cpp) against the Python references it
replaces, on hypothesis-generated text drawn from the characters each step treats specially
(controls, line breaks, Unicode spaces, surrogates, combining marks) mixed with ordinary ones, in
every kind of Python string (Latin-1, UCS-2, UCS-4). No ISA-specific code: one path to test."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastllm.data.normalize import NormalizeConfig, Normalizer, normalize_ref

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
