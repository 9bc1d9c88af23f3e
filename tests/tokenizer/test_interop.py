"""Interop with the real libraries: HF `tokenizers` loads our tokenizer.json and encodes like us,
we load HF-trained tokenizer.json and encode like it, tiktoken encodes like us from our export,
and the GGUF fields survive the `gguf` package's writer and reader."""

from __future__ import annotations

import pytest
from tok_corpus import (
    MULTILINGUAL,
    SPECIALS,
    hf_train,
    hf_training_texts,
    kjv_text,
    paragraphs,
    python_sources,
    shakespeare_files,
)

from fastllm.tokenizer import Tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="interop tests need HF tokenizers (pip install .[interop])")
tiktoken = pytest.importorskip("tiktoken", reason="interop tests need tiktoken (pip install .[interop])")


def held_out_texts() -> list[str]:
    plays = [p.read_text(encoding="utf-8") for p in shakespeare_files()[1:6:2]]
    texts = [para for play in plays for para in paragraphs(play)]
    texts += paragraphs(kjv_text()[:400_000])
    texts += [p.read_text(encoding="utf-8") for p in python_sources()]
    texts += MULTILINGUAL + ["<|end_of_text|>between<|begin_of_text|>", "", " ", "\n\n\n", "a" * 5000]
    return texts


@pytest.fixture(scope="module")
def texts():
    return held_out_texts()


def hf_ids(hf, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("fixture", ["ours_llama3", "ours_gpt2"])
def test_hf_loads_ours_and_encodes_identically(fixture, texts, tmp_path, request):
    tok: Tokenizer = request.getfixturevalue(fixture)
    path = tok.save(tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(path))
    ours = tok.encode_batch(texts, num_threads=2, allowed_special="all")
    assert ours == hf_ids(hf, texts)
    assert hf.get_vocab_size() == tok.vocab_size
    sample = ours[:50] + ours[-30:]
    assert [hf.decode(ids, skip_special_tokens=False) for ids in sample] == [tok.decode(ids) for ids in sample]


@pytest.mark.parametrize("pattern", ["llama3", "gpt2"])
def test_we_load_hf_trained_and_encode_identically(pattern, texts, tmp_path, hf_llama3):
    hf = hf_llama3 if pattern == "llama3" else hf_train("gpt2", hf_training_texts())
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = Tokenizer.from_file(path)
    assert tok.pattern == pattern and tok.vocab_size == hf.get_vocab_size()
    assert tok.special_tokens == {s: i for i, s in enumerate(SPECIALS)}
    assert tok.encode_batch(texts, num_threads=2, allowed_special="all") == hf_ids(hf, texts)
    # our canonical file of it is read back by HF with the same encodings
    again = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path / "ours.json")))
    assert hf_ids(again, texts[:200]) == hf_ids(hf, texts[:200])


def test_hf_vocabulary_missing_bytes_drops_them_like_hf(tmp_path):
    texts = [p.read_text(encoding="utf-8")[:50_000] for p in shakespeare_files()[:3]]
    hf = hf_train("llama3", texts, vocab_size=600, alphabet=False)  # only the bytes of English text
    hf.save(str(tmp_path / "t.json"))
    tok = Tokenizer.from_file(tmp_path / "t.json")
    probe = MULTILINGUAL + paragraphs(texts[0])[:100]
    assert tok.encode_batch(probe, allowed_special="all") == hf_ids(hf, probe)


def test_llama3_style_ignore_merges_matches_hf(ours_llama3, texts, tmp_path):
    import json

    obj = json.loads(ours_llama3.to_json_str())
    obj["model"]["ignore_merges"] = True
    path = tmp_path / "ignore.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    tok = Tokenizer.from_file(path)
    assert tok.ignore_merges
    hf = tokenizers.Tokenizer.from_file(str(path))
    assert tok.encode_batch(texts, allowed_special="all") == hf_ids(hf, texts)


@pytest.mark.parametrize("fixture", ["ours_llama3", "ours_gpt2", "hf_llama3_file"])
def test_tiktoken_export_encodes_identically(fixture, texts, request):
    value = request.getfixturevalue(fixture)
    tok = value if isinstance(value, Tokenizer) else Tokenizer.from_file(value)
    enc = tok.to_tiktoken()
    assert enc.n_vocab == tok.vocab_size
    assert enc.encode_ordinary_batch(texts, num_threads=2) == tok.encode_batch(texts, disallowed_special=())
    mixed = "a<|end_of_text|>b<|pad|>"
    assert enc.encode(mixed, allowed_special="all") == tok.encode(mixed, allowed_special="all")


def test_tiktoken_file_round_trip(ours_llama3, tmp_path):
    from tiktoken.load import load_tiktoken_bpe

    from fastllm.tokenizer.exports import mergeable_ranks, write_tiktoken_file

    path = write_tiktoken_file(ours_llama3, tmp_path / "ours.tiktoken")
    assert load_tiktoken_bpe(str(path)) == mergeable_ranks(ours_llama3)


def test_gguf_fields_round_trip_through_gguf_package(ours_llama3, ours_gpt2, tmp_path):
    gguf = pytest.importorskip("gguf", reason="needs the gguf package (pip install .[interop])")
    for tok in (ours_llama3, ours_gpt2):
        fields = tok.gguf_fields()
        assert fields["tokenizer.ggml.pre"] == ("llama-bpe" if tok.pattern == "llama3" else "gpt-2")
        path = tmp_path / f"{tok.pattern}.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_tokenizer_model(fields["tokenizer.ggml.model"])
        writer.add_tokenizer_pre(fields["tokenizer.ggml.pre"])
        writer.add_token_list(fields["tokenizer.ggml.tokens"])
        writer.add_token_types(fields["tokenizer.ggml.token_type"])
        writer.add_token_merges(fields["tokenizer.ggml.merges"])
        writer.add_bos_token_id(fields["tokenizer.ggml.bos_token_id"])
        writer.add_eos_token_id(fields["tokenizer.ggml.eos_token_id"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.close()
        reader = gguf.GGUFReader(str(path))
        tokens = [bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
                  for i in reader.fields["tokenizer.ggml.tokens"].data]
        assert tokens == fields["tokenizer.ggml.tokens"] and len(tokens) == tok.vocab_size
        merges = reader.fields["tokenizer.ggml.merges"]
        assert len(merges.data) == len(tok.merges)
        assert bytes(merges.parts[merges.data[0]]).decode() == fields["tokenizer.ggml.merges"][0]
        types = [int(reader.fields["tokenizer.ggml.token_type"].parts[i][0])
                 for i in reader.fields["tokenizer.ggml.token_type"].data]
        assert types.count(3) == len(SPECIALS) and types[tok.eos_id] == 3
        eos = reader.fields["tokenizer.ggml.eos_token_id"]
        assert int(eos.parts[eos.data[0]][0]) == tok.eos_id


def test_non_special_added_tokens_are_always_matched_like_hf(hf_llama3, texts, tmp_path):
    hf = tokenizers.Tokenizer.from_str(hf_llama3.to_str())  # a copy: the fixture is shared
    hf.add_tokens([tokenizers.AddedToken("thee", normalized=False), tokenizers.AddedToken("<think>"),
                   tokenizers.AddedToken(" naïve")])  # special=False: part of the text, not control tokens
    hf.add_special_tokens(["[CTRL]"])
    hf.save(str(tmp_path / "added.json"))
    tok = Tokenizer.from_file(tmp_path / "added.json")
    probe = [t for t in texts if "<|" not in t][:400] + ["I love thee <think> well", "a naïve plan", "thee"]
    expected = hf_ids(hf, probe)
    assert tok.encode_batch(probe, num_threads=2) == expected  # the defaults: no error, HF's ids
    assert [tok.encode(t) for t in probe[-3:]] == expected[-3:]
    assert [tok.encode_ordinary(t) for t in probe[-3:]] == expected[-3:]
    mixed = ["thee [CTRL] <think>"]
    with pytest.raises(ValueError, match=r"'\[CTRL\]'"):  # special tokens keep tiktoken's rule
        tok.encode_batch(mixed)
    assert tok.encode_batch(mixed, allowed_special="all") == hf_ids(hf, mixed)
    assert tok.decode(tok.encode(probe[-3])) == probe[-3]
    again = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path / "ours.json")))  # and our file keeps them
    assert hf_ids(again, probe) == expected
