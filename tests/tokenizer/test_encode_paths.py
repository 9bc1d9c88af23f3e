"""The encoder's internal paths give the same ids as the plain one: batches whose lists are built
while other workers encode, buffers reused between calls, concurrent callers."""

from __future__ import annotations

import threading

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
