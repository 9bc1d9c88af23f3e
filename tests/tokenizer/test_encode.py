"""Encoding and decoding: round trips, special tokens, batches, caches and the worst case."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_corpus import MULTILINGUAL, kjv_text, paragraphs

from fastllm.tokenizer import DisallowedSpecialTokenError, Tokenizer


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_round_trip_arbitrary_unicode(ours_llama3, ours_gpt2, text):
    for tok in (ours_llama3, ours_gpt2):
        ids = tok.encode(text, disallowed_special=())
        expected = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")  # lone surrogates -> U+FFFD
        assert tok.decode(ids) == expected
        assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decode_bytes_round_trip(ours_llama3, data):
    text = data.decode("utf-8", errors="replace")
    assert ours_llama3.decode_bytes(ours_llama3.encode(text)) == text.encode("utf-8")


def test_multilingual_round_trip_and_compression(ours_llama3):
    for text in MULTILINGUAL:
        assert ours_llama3.decode(ours_llama3.encode(text)) == text
    prose = kjv_text()[:100_000]
    ids = ours_llama3.encode(prose)
    assert len(prose.encode()) / len(ids) > 2.5  # even a 2000-token vocabulary compresses English


def test_lone_surrogates_become_replacement_characters(ours_llama3):
    text = "ok \ud800 then \udfff end \U0001F600"
    assert ours_llama3.decode(ours_llama3.encode(text)) == "ok \ufffd then \ufffd end \U0001F600"
    assert ours_llama3.encode_batch([text, "plain"], num_threads=2)[0] == ours_llama3.encode(text)


def test_special_tokens_follow_tiktoken_rules(ours_llama3):
    tok = ours_llama3
    eos, bos = tok.eos_id, tok.bos_id
    assert (bos, eos) == (tok.special_tokens["<|begin_of_text|>"], tok.special_tokens["<|end_of_text|>"])
    text = "Hello<|end_of_text|>world"
    with pytest.raises(DisallowedSpecialTokenError, match="end_of_text"):
        tok.encode(text)
    with pytest.raises(ValueError):
        tok.encode_batch(["fine", text])
    allowed = tok.encode(text, allowed_special={"<|end_of_text|>"})
    assert allowed == tok.encode("Hello") + [eos] + tok.encode("world")
    assert tok.encode(text, allowed_special="all") == allowed
    plain = tok.encode(text, disallowed_special=())
    assert eos not in plain and tok.decode(plain) == text
    assert tok.encode_ordinary(text) == plain
    # allowed one, disallowed the other
    with pytest.raises(DisallowedSpecialTokenError, match="begin_of_text"):
        tok.encode("<|begin_of_text|>x<|end_of_text|>", allowed_special={"<|end_of_text|>"})
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})
    assert tok.decode([bos, eos]) == "<|begin_of_text|><|end_of_text|>"
    assert tok.token_to_id("<|pad|>") == tok.special_tokens["<|pad|>"]


def test_batch_equals_single_and_threads_agree(ours_llama3):
    texts = paragraphs(kjv_text()[:200_000]) + MULTILINGUAL + ["", " ", "x"]
    single = [ours_llama3.encode(t) for t in texts]
    assert ours_llama3.encode_batch(texts, num_threads=1) == single
    assert ours_llama3.encode_batch(texts, num_threads=2) == single
    assert ours_llama3.encode_batch(iter(texts[:5]), num_threads=3) == single[:5]


def test_batch_flat_matches_batch(ours_llama3):
    import numpy as np

    texts = paragraphs(kjv_text()[:100_000]) + ["", "<|end_of_text|>x"] + MULTILINGUAL
    tokens, offsets = ours_llama3.encode_batch_flat(texts, num_threads=2, allowed_special="all")
    assert tokens.dtype == np.uint32 and offsets.dtype == np.int64 and len(offsets) == len(texts) + 1
    expected = ours_llama3.encode_batch(texts, allowed_special="all")
    assert [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(texts))] == expected
    with pytest.raises(DisallowedSpecialTokenError):
        ours_llama3.encode_batch_flat(texts)
    empty_tokens, empty_offsets = ours_llama3.encode_batch_flat([])
    assert len(empty_tokens) == 0 and empty_offsets.tolist() == [0]


def test_word_cache_does_not_change_results(ours_llama3):
    words = [" " + "".join(random.Random(i).choices("abcdefghij", k=random.Random(i).randint(1, 12)))
             for i in range(3000)]
    text = "".join(words)
    first = ours_llama3.encode(text)
    assert ours_llama3.encode(text) == first  # second time from the cache
    uncached = [i for w in words for i in ours_llama3._model.encode_word(w.encode())]
    assert first == uncached


def random_bytes_without_whitespace() -> str:
    data = bytes(b for b in random.Random(0).randbytes(2**20 + 2**18) if b not in b" \t\n\r\x0b\x0c\x85\xa0")
    return data[:2**20].decode("utf-8", errors="replace")


@pytest.mark.parametrize("make", [lambda: "a" * 2**20, lambda: "".join(random.Random(1).choices("ab", k=2**20)),
                                  lambda: "\U0001F600" * 2**18, random_bytes_without_whitespace],
                         ids=["a-run", "ab-random", "emoji-run", "random-bytes"])
def test_one_mib_word_is_not_quadratic(ours_llama3, make):
    text = make()
    start = time.perf_counter()
    ids = ours_llama3.encode(text)
    elapsed = time.perf_counter() - start
    assert ours_llama3.decode(ids) == text
    assert elapsed < 1.0, f"{elapsed:.2f}s for a 1 MiB word"


def test_decode_accepts_numpy_arrays_and_iterables(ours_llama3):
    import numpy as np

    ids = ours_llama3.encode(MULTILINGUAL[8])
    for dtype in (np.uint32, np.int64, np.int32, np.uint16):
        assert ours_llama3.decode(np.asarray(ids, dtype=dtype)) == MULTILINGUAL[8]
    assert ours_llama3.decode(np.asarray(ids, dtype=np.int64)[::2]) == ours_llama3.decode(ids[::2])
    assert ours_llama3.decode(iter(ids)) == ours_llama3.decode(tuple(ids)) == MULTILINGUAL[8]
    with pytest.raises(ValueError, match="out of range"):
        ours_llama3.decode(np.asarray([1, -1]))


def test_vocab_accessors(ours_llama3):
    tok = ours_llama3
    assert tok.vocab_size == 2000
    assert tok.token_to_id("Ġthe") is not None and tok.token_bytes(tok.token_to_id("Ġthe")) == b" the"
    assert tok.id_to_token(tok.token_to_id("Ġthe")) == "Ġthe"
    assert tok.token_to_id("not-a-token-at-all") is None
    assert tok.token_to_id("\u4e00") is None  # not a byte-level spelling
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.decode([tok.vocab_size + 5])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([-1])
    assert "vocab_size=2000" in repr(tok)


def test_tokenizer_survives_pickling_for_multiprocessing(ours_llama3):
    import pickle

    clone = pickle.loads(pickle.dumps(ours_llama3))
    assert isinstance(clone, Tokenizer) and clone.hash() == ours_llama3.hash()
    assert clone.encode(MULTILINGUAL[0]) == ours_llama3.encode(MULTILINGUAL[0])
