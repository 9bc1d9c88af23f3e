"""train_bpe: agreement with HF's BpeTrainer, determinism, streaming, memory cap, bad inputs."""

from __future__ import annotations

import pytest
from tok_corpus import MULTILINGUAL, SPECIALS, hf_train, kjv_text, python_sources, shakespeare_files

from fastllm.tokenizer import Tokenizer, train_bpe, train_bpe_with_stats
from fastllm.utils.errors import FastLLMError


def merge_bytes(tok: Tokenizer) -> list[bytes]:
    return [tok.token_bytes(a) + b"|" + tok.token_bytes(b) for a, b in tok.merges]


def test_same_merges_as_hf_bpe_trainer(tmp_path):
    texts = [p.read_text(encoding="utf-8")[:150_000] for p in shakespeare_files()[:6]] + MULTILINGUAL
    hf = hf_train("llama3", texts, vocab_size=1500)
    hf.save(str(tmp_path / "hf.json"))
    theirs = Tokenizer.from_file(tmp_path / "hf.json")
    ours = train_bpe(texts, 1500, min_frequency=1, special_tokens=SPECIALS)
    assert merge_bytes(ours) == merge_bytes(theirs)


def test_vocabulary_layout(ours_llama3):
    tok = ours_llama3
    assert [tok.token_bytes(b) for b in range(256)] == [bytes([b]) for b in range(256)]
    assert len(tok.merges) == 2000 - 256 - 3
    for k, (a, b) in enumerate(tok.merges[:50]):
        assert tok.token_bytes(256 + k) == tok.token_bytes(a) + tok.token_bytes(b)
    assert tok.special_tokens == {s: 2000 - 3 + i for i, s in enumerate(SPECIALS)}


def test_deterministic_across_thread_counts_and_inputs(tmp_path):
    files = shakespeare_files()[:4] + python_sources()[:2]
    one = train_bpe(files, 1200, num_threads=1)
    two = train_bpe(files, 1200, num_threads=2)
    assert one.hash() == two.hash()
    texts = [p.read_text(encoding="utf-8") for p in files]
    assert train_bpe(texts, 1200, num_threads=2).hash() == one.hash()  # files == their texts
    assert train_bpe(iter(texts), 1200).hash() == one.hash()            # a generator streams
    assert train_bpe([str(p) for p in files], 1200).hash() == one.hash()  # str paths
    assert train_bpe(iter(files), 1200).hash() == one.hash()             # Path objects in a stream


def test_strings_in_a_stream_are_always_documents():
    docs = ["https://example.com/a/b.html", "readme.txt", "<|end_of_text|>", "plain words here"] * 20
    with pytest.raises(FastLLMError, match="no such file"):
        train_bpe(docs, 300)  # in a list, path-like strings are paths
    tok = train_bpe(iter(docs), 300)
    assert tok.decode(tok.encode(docs[0])) == docs[0]


def test_large_file_cut_into_pieces_counts_like_one_text(tmp_path):
    text = kjv_text()  # ~6 MB: read in 1 MiB pieces cut at safe boundaries
    path = tmp_path / "kjv.txt"
    path.write_text(text, encoding="utf-8")
    from_file, stats = train_bpe_with_stats(path, 600, num_threads=2)
    assert stats.files == 1 and stats.bytes == len(text.encode())
    assert from_file.hash() == train_bpe([text], 600).hash()


def test_memory_cap_prunes_rare_words_deterministically():
    files = shakespeare_files()[:8]
    tok1, stats = train_bpe_with_stats(files, 800, max_words=5000, num_threads=1)
    assert stats.prunes > 0 and stats.prune_threshold >= 1 and stats.distinct_words <= 5000
    tok2, _ = train_bpe_with_stats(files, 800, max_words=5000, num_threads=2)
    assert tok1.hash() == tok2.hash()
    exact, exact_stats = train_bpe_with_stats(files, 800)
    assert exact_stats.prunes == 0
    # the frequent words survive the prune, so the first merges hardly change
    assert len(set(merge_bytes(tok1)[:200]) & set(merge_bytes(exact)[:200])) >= 180


def test_min_frequency_stops_early_and_specials_are_not_counted():
    text = "<|end_of_text|>".join(["the cat sat on the mat"] * 50) + " rare words appear once"
    tok, stats = train_bpe_with_stats([text], 5000, min_frequency=10)
    assert stats.merges < 100 and tok.vocab_size == 256 + stats.merges + 3
    assert not any(b"<|" in tok.token_bytes(256 + k) or b"|>" in tok.token_bytes(256 + k)
                   for k in range(stats.merges))
    assert tok.encode(text, allowed_special="all").count(tok.eos_id) == 49


def test_invalid_utf8_strict_error_or_replacement(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text here\nmore good text " * 100 + b"\xff\xfe broken" + b" tail words" * 10)
    with pytest.raises(FastLLMError, match=r"bad\.txt: invalid UTF-8 at byte 3000"):
        train_bpe(path, 300)
    tok = train_bpe(path, 280, errors="replace")
    assert tok.vocab_size == 280


@pytest.mark.parametrize("make_input, message", [
    (lambda d: d / "missing.txt", "missing.txt: no such file"),
    (lambda d: str(d / "*.nothing"), "no file matches"),
    (lambda d: d / "empty.txt", "empty.txt: the corpus is empty"),
    (lambda d: [], "corpus is empty"),
    (lambda d: 5, "neither a path nor a text"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, make_input, message):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(FastLLMError, match=message) as info:
        train_bpe(make_input(tmp_path), 300)
    assert "\n" not in str(info.value)


def test_bad_options_give_one_line_errors():
    cases = [(dict(vocab_size=258), "below the 259 tokens"), (dict(min_frequency=0), "min_frequency"),
             (dict(pattern="o200k"), "unknown pre-tokenizer pattern"), (dict(special_tokens=["a", "a"]), "duplicates"),
             (dict(errors="ignore"), "errors"), (dict(max_words=10), "max_words")]
    for kwargs, message in cases:
        options = {"vocab_size": 300, **kwargs}
        with pytest.raises(FastLLMError, match=message):
            train_bpe(["some text to train on"], options.pop("vocab_size"), **options)


def test_vocab_size_equal_to_floor_gives_bytes_only():
    tok = train_bpe(["hello hello hello world"], 256 + 3)
    assert tok.merges == [] and tok.vocab_size == 259
    assert tok.decode(tok.encode("hello")) == "hello" and len(tok.encode("hello")) == 5


def test_pieces_are_never_cut_inside_a_special_token(tmp_path, monkeypatch):
    from fastllm.tokenizer import train as train_module

    monkeypatch.setattr(train_module, "PIECE_BYTES", 64)  # force a cut every few words
    special = "<|im start|>"  # a space inside: a place where safe cuts happen
    text = "".join(f"word{i} and more{special}" for i in range(300))
    path = tmp_path / "specials.txt"
    path.write_text(text, encoding="utf-8")
    tok = train_bpe(path, 400, special_tokens=[special], min_frequency=1)
    assert tok.hash() == train_bpe([text], 400, special_tokens=[special], min_frequency=1).hash()
    assert not any(b"<|im" in tok.token_bytes(i) for i in range(256, 399))
    # A piece that starts with the special and has no other safe cut (CJK without spaces): the
    # only cut is the space inside the special, which must move past it, not split it.
    text = ("ab " * 10 + special + "一二三四五六七八九十" * 10 + "\n") * 20
    path.write_text(text, encoding="utf-8")
    tok = train_bpe(path, 400, special_tokens=[special], min_frequency=1)
    assert tok.hash() == train_bpe([text], 400, special_tokens=[special], min_frequency=1).hash()
    assert not any(b"<|" in tok.token_bytes(i) or b"|>" in tok.token_bytes(i) for i in range(256, tok.vocab_size - 1))


def test_streaming_batches_with_repeated_prunes_are_thread_independent(monkeypatch):
    from fastllm.tokenizer import train as train_module

    monkeypatch.setattr(train_module, "BATCH_BYTES", 200_000)  # many batches, a prune after several
    files = shakespeare_files()[:6]
    one, stats = train_bpe_with_stats(files, 700, max_words=3000, num_threads=1)
    two, _ = train_bpe_with_stats(files, 700, max_words=3000, num_threads=2)
    assert stats.prunes > 1 and one.hash() == two.hash()
