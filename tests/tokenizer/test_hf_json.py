"""tokenizer.json: our round trip, canonical hash, and one-line errors for bad or unsupported files."""

from __future__ import annotations

import json

import pytest
from tok_corpus import MULTILINGUAL

from fastllm.tokenizer import Tokenizer
from fastllm.tokenizer.hf_json import TokenizerFormatError


def test_save_load_round_trip_keeps_everything(ours_llama3, ours_gpt2, tmp_path):
    for tok in (ours_llama3, ours_gpt2):
        path = tok.save(tmp_path)  # a directory gets tokenizer.json
        assert path.name == "tokenizer.json"
        back = Tokenizer.from_file(path)
        assert back.hash() == tok.hash() and back.to_json_str() == path.read_text(encoding="utf-8")
        assert (back.pattern, back.merges, back.special_tokens) == (tok.pattern, tok.merges, tok.special_tokens)
        assert back.encode_batch(MULTILINGUAL) == tok.encode_batch(MULTILINGUAL)
    assert ours_llama3.hash() != ours_gpt2.hash()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary behind


def edited(tok: Tokenizer, edit) -> str:
    obj = json.loads(tok.to_json_str())
    edit(obj)
    return json.dumps(obj)


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(normalizer={"type": "NFC"}), "normalizer: 'NFC' is not supported"),
    (lambda o: o["model"].update(dropout=0.1), "model.dropout"),
    (lambda o: o["model"].update(type="WordPiece"), "model.type"),
    (lambda o: o["model"].update(continuing_subword_prefix="##"), "continuing_subword_prefix"),
    (lambda o: o["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"), "not one of the supported"),
    (lambda o: o["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True), "add_prefix_space"),
    (lambda o: o.update(pre_tokenizer={"type": "Whitespace"}), "'Whitespace' is not supported"),
    (lambda o: o["added_tokens"][0].update(lstrip=True), "lstrip=true"),
    (lambda o: o["model"]["merges"].append(["Ġthe", "nonexistent"]), "'nonexistent' is not in the vocabulary"),
    (lambda o: o["model"]["merges"].append("only-one-part"), "is not a pair of tokens"),
    (lambda o: o["model"]["vocab"].update({"中文": 99999}), "is not byte-level"),
    (lambda o: o["model"]["vocab"].update({"Ġzzzq": 5}), "two tokens share an id"),
    (lambda o: o["model"].update(vocab={}), "model.vocab: missing or empty"),
    (lambda o: o["added_tokens"][0].update(id=3), "belongs to another token"),
])
def test_unsupported_or_inconsistent_files_are_refused(ours_llama3, tmp_path, edit, message):
    path = tmp_path / "tokenizer.json"
    path.write_text(edited(ours_llama3, edit), encoding="utf-8")
    with pytest.raises(TokenizerFormatError, match=message) as info:
        Tokenizer.from_file(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"{not json", "invalid JSON at line 1"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []', "invalid JSON"),
    (b"[1, 2, 3]", "no 'model' object"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}', "pre_tokenizer: missing"),
])
def test_corrupt_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(TokenizerFormatError, match=message) as info:
        Tokenizer.from_file(path)
    assert "\n" not in str(info.value)


def test_truncated_file_is_refused(ours_llama3, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(ours_llama3.to_json_str()[:5000], encoding="utf-8")
    with pytest.raises(TokenizerFormatError, match="invalid JSON"):
        Tokenizer.from_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TokenizerFormatError, match="not found"):
        Tokenizer.from_file(tmp_path / "nope.json")
    with pytest.raises(TokenizerFormatError, match="is a directory"):
        Tokenizer.from_file(tmp_path)


def test_legacy_string_merges_and_cl100k_spelling_are_read(ours_llama3, tmp_path):
    def legacy(o):
        o["model"]["merges"] = [" ".join(m) for m in o["model"]["merges"]]
        o["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = (
            r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
            r"|\s+(?!\S)|\s+")

    tok = Tokenizer.from_json_str(edited(ours_llama3, legacy))
    assert tok.hash() == ours_llama3.hash()


@pytest.mark.parametrize("edit, message", [
    (lambda o: o["model"]["vocab"].update({"Ġzzzq": 3 * 10**8}), "token id 300000000 is far above"),
    (lambda o: o["added_tokens"][0].update(id=2**40), "added_tokens: token id 1099511627776 is far above"),
    (lambda o: o.update(normalizer="NFC"), "normalizer: expected an object"),
    (lambda o: o.update(added_tokens=7), "added_tokens: expected a list"),
    (lambda o: o["pre_tokenizer"]["pretokenizers"].__setitem__(0, None), "is not supported"),
    (lambda o: o["pre_tokenizer"]["pretokenizers"][0].update(pattern="\\s+"), "not one of the supported"),
])
def test_hostile_sizes_and_shapes_are_refused(ours_llama3, edit, message):
    # A stray huge id used to allocate a table of that many entries (3e8: 20 GB, 90 s) and succeed.
    with pytest.raises(TokenizerFormatError, match=message):
        Tokenizer.from_json_str(edited(ours_llama3, edit))


def test_any_wrongly_typed_field_is_a_format_error():
    from fastllm.tokenizer import train_bpe

    base = json.loads(train_bpe(["the quick brown fox jumps over the lazy dog " * 20], 300).to_json_str())

    def paths(node, prefix=()):
        yield prefix
        children = node.items() if isinstance(node, dict) else enumerate(node[:2]) if isinstance(node, list) else ()
        for key, child in children:
            yield from paths(child, prefix + (key,))

    wrong = [None, -1, 1.5, True, "x", [], {}, [1], {"type": "BPE"}, 2**40]
    for path in list(paths(base))[1:]:
        for value in wrong:
            obj = json.loads(json.dumps(base))
            node = obj
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            try:
                Tokenizer.from_json_str(json.dumps(obj))
            except TokenizerFormatError:
                pass
            except Exception as exc:  # anything else would be a traceback for the user
                pytest.fail(f"{'.'.join(map(str, path))} = {value!r}: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ tokenizer_config.json beside it
def test_special_ids_come_from_tokenizer_config_beside_it(ours_gpt2, tmp_path):
    import pickle

    path = ours_gpt2.save(tmp_path)
    guessed = Tokenizer.from_file(path)
    names = guessed.special_tokens
    assert guessed.special_ids == {} and (guessed.bos_id, guessed.eos_id, guessed.pad_id, guessed.unk_id) == (
        names["<|begin_of_text|>"], names["<|end_of_text|>"], names["<|pad|>"], None)  # guessed from names
    config = {"bos_token": "<|end_of_text|>", "eos_token": {"content": "<|pad|>", "__type": "AddedToken"},
              "unk_token": None, "pad_token": "Ġthe", "chat_template": "not read here"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = Tokenizer.from_file(path)
    stated = {"bos": names["<|end_of_text|>"], "eos": names["<|pad|>"], "pad": tok.token_to_id("Ġthe")}
    assert tok.special_ids == stated and (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id) == (
        stated["bos"], stated["eos"], stated["pad"], None)
    assert tok.hash() == guessed.hash()  # tokenizer.json is unchanged; the ids live beside it
    assert pickle.loads(pickle.dumps(tok)).special_ids == stated  # what worker processes get
    fields = tok.gguf_fields()
    assert (fields["tokenizer.ggml.bos_token_id"], fields["tokenizer.ggml.eos_token_id"],
            fields["tokenizer.ggml.padding_token_id"]) == (stated["bos"], stated["eos"], stated["pad"])


@pytest.mark.parametrize("config, message", [
    ('{"eos_token": "<|nope|>"}', "eos_token: '<|nope|>' is not a token of"),
    ('{"bos_token": 7}', "bos_token: expected a token's text, got 7"),
    ("{not json", "unreadable"),
    ("[]", "expected a JSON object"),
])
def test_bad_tokenizer_config_is_a_one_line_error(ours_gpt2, tmp_path, config, message):
    path = ours_gpt2.save(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(config, encoding="utf-8")
    with pytest.raises(TokenizerFormatError, match=message) as info:
        Tokenizer.from_file(path)
    assert str(info.value).startswith(str(tmp_path / "tokenizer_config.json")) and "\n" not in str(info.value)


def test_special_ids_are_checked(ours_gpt2):
    tokens, merges, added = ours_gpt2.tokens, ours_gpt2.merges, ours_gpt2.added_tokens
    with pytest.raises(ValueError, match="eos id 1000000 is not a token id"):
        Tokenizer(tokens, merges, added, pattern="gpt2", special_ids={"eos": 10**6})
    with pytest.raises(ValueError, match="unknown role 'sep'"):
        Tokenizer(tokens, merges, added, pattern="gpt2", special_ids={"sep": 1})
    first = added[0]
    with pytest.raises(ValueError, match="have the same text"):  # special_tokens would name one id, encode another
        Tokenizer(tokens, merges, [*added, type(first)(first.content, ours_gpt2.vocab_size)], pattern="gpt2")
