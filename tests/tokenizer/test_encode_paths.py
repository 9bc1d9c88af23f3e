"""The encoder's internal paths give the same ids as the plain one: batches whose lists are built
while other workers encode, buffers reused between calls, concurrent callers, long texts cut into
pieces encoded on several threads."""

from __future__ import annotations

import random
import sys
import threading

import pytest
from tok_corpus import MULTILINGUAL, kjv_text, paragraphs


def test_batch_lists_any_thread_count(ours_llama3):
    texts = paragraphs(kjv_text()[:60_000]) + MULTILINGUAL + ["", "x", ""]
    single = [ours_llama3.encode(t) for t in texts]
    for threads in (1, 2, 3, 8, 64):
        assert ours_llama3.encode_batch(texts, num_threads=threads) == single
    assert ours_llama3.encode_batch([], num_threads=2) == []
    assert ours_llama3.encode_batch([""], num_threads=2) == [[]]
    assert ours_llama3.encode_batch(texts[:1], num_threads=4) == single[:1]


def test_batch_lists_are_independent_objects(ours_llama3):
    out = ours_llama3.encode_batch(["a b", "a b"], num_threads=2)
    out[0].append(-1)
    assert out[1] == ours_llama3.encode("a b")


def test_reused_output_buffer_between_calls(ours_llama3):
    long_text = kjv_text()[:300_000]
    expected = ours_llama3.encode(long_text)
    short = ours_llama3.encode("In the beginning")
    assert ours_llama3.encode(long_text) == expected
    assert ours_llama3.encode("In the beginning") == short
    assert ours_llama3.encode("") == []


def test_concurrent_batch_calls_from_python_threads(ours_llama3):
    texts = paragraphs(kjv_text()[:40_000]) + MULTILINGUAL
    expected = [ours_llama3.encode(t) for t in texts]
    results, errors = [], []

    def work():
        try:
            for _ in range(3):
                results.append(ours_llama3.encode_batch(texts, num_threads=2) == expected)
                results.append(ours_llama3.encode(texts[0]) == expected[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 18 and all(results)


def long_texts() -> dict[str, str]:
    prose = kjv_text()[:700_000]
    rng = random.Random(7)
    words = prose.split(" ")
    for i in range(0, len(words), 997):  # specials glued to words and spaces, across likely cuts
        words[i] = rng.choice(["<|end_of_text|>", "x<|begin_of_text|>", "<|pad|> ", " <|end_of_text|>"]) + words[i]
    return {
        "prose": prose,
        "prose-with-specials": " ".join(words),
        "one-long-word": "ab" * 200_000,
        "whitespace": ("  \n\n \t" * 50_000) + "word",
        "newlines-and-numbers": "\n".join(f"{i} line{i}\n\n  {i * 7}" for i in range(40_000)),
        "multilingual": "\n".join(MULTILINGUAL) * 200,
    }


@pytest.mark.parametrize("name", list(long_texts()))
def test_long_text_cut_into_pieces_encodes_the_same(ours_llama3, ours_gpt2, name):
    text = long_texts()[name]
    assert len(text.encode()) >= 1 << 18  # long enough for the threaded path
    for tok in (ours_llama3, ours_gpt2):
        for options in ({"disallowed_special": ()}, {"allowed_special": "all"}):
            one = tok.encode(text, num_threads=1, **options)
            assert tok.encode(text, num_threads=2, **options) == one
            assert tok.encode(text, num_threads=3, **options) == one
    assert ours_llama3.encode_ordinary(text, num_threads=2) == ours_llama3.encode_ordinary(text, num_threads=1)


def test_threaded_long_text_list_holds_real_references(ours_llama3):
    text = kjv_text()[:400_000]
    for threads in (1, 2):
        ids = ours_llama3.encode(text, num_threads=threads)
        token = next(i for i in ids if i > 300)  # not one of CPython's shared small ints
        occurrences = ids.count(token)
        with_list = sys.getrefcount(token)
        del ids
        assert with_list - sys.getrefcount(token) == occurrences


@pytest.mark.parametrize("torch_team", [True, False])
def test_threaded_paths_agree_on_both_executors(ours_llama3, torch_team):
    # With torch imported, parallel_for runs on torch's OpenMP team, whose threads then take the
    # GIL to build lists; without it on fastllm's pool. Same ids either way.
    pytest.importorskip("torch")
    from fastllm import _ext

    texts = paragraphs(kjv_text()[:60_000]) + MULTILINGUAL
    expected = [ours_llama3.encode(t) for t in texts]
    long_text = kjv_text()[:400_000]
    long_expected = ours_llama3.encode(long_text, num_threads=1)
    core = _ext.cpu().core
    previous = core.use_torch_openmp(torch_team)
    try:
        assert ours_llama3.encode_batch(texts, num_threads=2) == expected
        assert ours_llama3.encode(long_text, num_threads=2) == long_expected
    finally:
        core.use_torch_openmp(previous)
