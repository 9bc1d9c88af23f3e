"""Decontamination: 13-gram overlap with evaluation sets, drop or redact, per-set counts."""

from __future__ import annotations

import json

import pytest

from fastllm.data.decontam import DecontamConfig, EvalIndex
from fastllm.utils.errors import ConfigError
from tests.data.corpus import kjv_paragraphs, shakespeare_docs

QUESTION = ("Which king of Denmark was murdered by his brother Claudius, who poured poison into his ear while "
            "he slept in the orchard one afternoon?")


def test_match_counts_and_sets():
    docs = shakespeare_docs(20)
    bible = kjv_paragraphs(50)
    index = EvalIndex.from_texts({"trivia": [QUESTION], "bible_eval": bible[40:42]}, ngram=13)
    leaked = docs[3] + " " + QUESTION.upper().replace(",", " ;") + " " + docs[4]
    partial = " ".join(QUESTION.split()[:12]) + " and nothing more"
    texts = docs[:3] + [leaked, partial, bible[41] + " amen"]
    counts, masks = index.match(texts, num_threads=2)
    assert counts.tolist()[:3] == [0, 0, 0]
    assert counts[3] == len(QUESTION.split()) - 13 + 1  # case and punctuation ignored
    assert counts[4] == 0  # 12 shared words are not a 13-gram
    assert counts[5] > 0
    assert index.set_names(int(masks[3])) == ["trivia"] and index.set_names(int(masks[5])) == ["bible_eval"]


def test_redact_cuts_only_the_shared_span():
    index = EvalIndex.from_texts({"trivia": [QUESTION]})
    text = f"Intro words here. {QUESTION} Outro words remain."
    assert index.redact(text, placeholder="[removed]") == "Intro words here. [removed]? Outro words remain."
    assert index.redact("unrelated text") == "unrelated text"


def test_short_eval_texts_and_empty_index():
    index = EvalIndex.from_texts({"tiny": ["too short to form a thirteen gram"]})
    assert len(index) == 0
    counts, _ = index.match(["too short to form a thirteen gram"])
    assert counts.tolist() == [0]


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        EvalIndex.from_config(DecontamConfig(eval_sets={"x": str(tmp_path / "missing.jsonl")}))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ConfigError, match="holds no text"):
        EvalIndex.from_config(DecontamConfig(eval_sets={"x": str(tmp_path / "empty.txt")}))
    (tmp_path / "qa.jsonl").write_text(json.dumps({"text": QUESTION}) + "\n")
    index = EvalIndex.from_config(DecontamConfig(eval_sets={"qa": str(tmp_path / "qa.jsonl")}))
    assert len(index) == len(QUESTION.split()) - 12
