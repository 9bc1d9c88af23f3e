"""Reads and writes HF tokenizer.json for byte-level BPE.

Written: a BPE model (vocab in byte-level characters, merges as [left, right] pairs), the
pre-tokenizer (llama3: Split(regex, Isolated) then ByteLevel(use_regex=false); gpt2: ByteLevel
with use_regex=true; smollm: Digits(individual_digits=true) then ByteLevel(use_regex=true), as
SmolLM2's tokenizer.json has it), ByteLevel decoder and post-processor, and the special tokens as added
tokens. `tokenizers.Tokenizer.from_file` loads it and encodes like we do.

Read: the same shapes, as `tokenizers` writes them (merges as "a b" strings or pairs; the
split patterns under their known spellings; ignore_merges). Anything that would change how text is
encoded and that we do not implement (a normalizer, another split pattern, add_prefix_space,
dropout, byte_fallback, subword prefixes, lstrip/rstrip/single_word added tokens) is refused
with an error naming the file and the field, rather than encoded differently. post_processor
and decoder are not used: encode() never adds BOS/EOS, decode() joins token bytes.

HF keeps which tokens are bos/eos/unk/pad in tokenizer_config.json (bos_token, ... by text);
when one sits beside the tokenizer.json, those become the tokenizer's stated special_ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastllm.tokenizer.bpe import SPECIAL_ROLES, AddedToken, Tokenizer
from fastllm.tokenizer.bytelevel import bytes_to_token, token_to_bytes
from fastllm.tokenizer.patterns import PATTERNS, pattern_name
from fastllm.utils.errors import InputFormatError
from fastllm.utils.jsonfile import read_json_object


class TokenizerFormatError(InputFormatError):
    """tokenizer.json is unreadable, malformed or describes a tokenizer we do not implement."""


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def to_json_dict(tok: Tokenizer) -> dict[str, Any]:
    if tok.pattern == "gpt2":
        pre_tokenizer = _byte_level(True)
    elif tok.pattern == "smollm":
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                               _byte_level(True)]}
    else:
        split = {"type": "Split", "pattern": {"Regex": PATTERNS[tok.pattern]}, "behavior": "Isolated",
                 "invert": False}
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, _byte_level(False)]}
    strings = [None if t is None else bytes_to_token(t) for t in tok.tokens]
    vocab = {t: i for i, t in enumerate(strings) if t is not None}
    merges = [[strings[a], strings[b]] for a, b in tok.merges]
    added = [{"id": t.id, "content": t.content, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": t.special} for t in tok.added_tokens]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": tok.ignore_merges, "vocab": vocab, "merges": merges},
    }


def dump_tokenizer_json(tok: Tokenizer) -> str:
    """tokenizer.json text: one line per top-level field, per vocab entry and per merge, written
    with json's C encoder (its pure-Python pretty printer takes seconds on a large vocabulary).
    Byte-level token strings never contain a space, so '], [' only occurs between merges."""
    obj = to_json_dict(tok)
    model = obj.pop("model")
    vocab, merges = model.pop("vocab"), model.pop("merges")

    def dumps(value, separators=(", ", ": ")) -> str:
        return json.dumps(value, ensure_ascii=False, separators=separators)

    vocab_text = dumps(vocab, separators=(",\n      ", ": "))
    merges_text = dumps(merges).replace("], [", "],\n      [")
    lines = ["{"] + [f"  {dumps(k)}: {dumps(v)}," for k, v in obj.items()] + ['  "model": {']
    lines += [f"    {dumps(k)}: {dumps(v)}," for k, v in model.items()]
    lines += [f'    "vocab": {{\n      {vocab_text[1:-1]}\n    }},',
              f'    "merges": [\n      {merges_text[1:-1]}\n    ]' if merges else '    "merges": []']
    return "\n".join(lines + ["  }", "}"]) + "\n"


def read_tokenizer_json(path: Path) -> Tokenizer:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerFormatError(f"{path}: tokenizer file not found") from None
    except IsADirectoryError:
        raise TokenizerFormatError(f"{path}: is a directory, expected a tokenizer.json file") from None
    except UnicodeDecodeError as exc:
        raise TokenizerFormatError(f"{path}: not UTF-8 text (byte {exc.start}); expected tokenizer.json") from None
    except OSError as exc:
        raise TokenizerFormatError(f"{path}: cannot read ({exc.strerror})") from None
    config = path.parent / "tokenizer_config.json"
    names = _special_names(config) if config.is_file() else {}
    return parse_tokenizer_json(text, str(path), special_names=names, names_where=str(config))


def _special_names(config: Path) -> dict[str, str]:
    """The texts tokenizer_config.json gives as bos_token, eos_token, unk_token, pad_token (a
    string or an AddedToken object with "content"; null or absent: not stated)."""
    obj = read_json_object(config, TokenizerFormatError, hint="; fix or remove it")
    names = {}
    for role in SPECIAL_ROLES:
        value = obj.get(f"{role}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise TokenizerFormatError(f"{config}: {role}_token: expected a token's text, got {value!r}")
        names[role] = value
    return names


def parse_tokenizer_json(text: str, where: str, *, special_ids: Mapping[str, int | None] | None = None,
                         special_names: Mapping[str, str] | None = None, names_where: str = "") -> Tokenizer:
    """The tokenizer of tokenizer.json text. special_ids: stated bos/eos/unk/pad ids;
    special_names: the same given by token text (from `names_where`, a tokenizer_config.json)."""
    if not text.strip():
        raise TokenizerFormatError(f"{where}: empty file; expected tokenizer.json")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerFormatError(f"{where}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise TokenizerFormatError(f"{where}: no 'model' object; not a tokenizer.json file")
    return _Reader(obj, where).tokenizer(dict(special_ids or {}), dict(special_names or {}), names_where)


class _Reader:
    def __init__(self, obj: dict[str, Any], where: str) -> None:
        self.obj, self.where = obj, where

    def fail(self, field: str, problem: str) -> TokenizerFormatError:
        return TokenizerFormatError(f"{self.where}: {field}: {problem}")

    def tokenizer(self, special_ids: dict[str, int | None], names: dict[str, str], names_where: str) -> Tokenizer:
        model = self.obj["model"]
        self.check_model_options(model)
        self.check_normalizer()
        pattern = self.pattern()
        added = self.added_tokens()
        tokens, by_string = self.vocab(model, {t.id: t for t in added})
        merges = self.merges(model, by_string)
        by_text = {**by_string, **{t.content: t.id for t in added}}
        for role, name in names.items():
            if name not in by_text:
                raise TokenizerFormatError(f"{names_where}: {role}_token: {name!r} is not a token of {self.where}; "
                                           "correct or remove it")
            special_ids.setdefault(role, by_text[name])
        try:
            return Tokenizer(tokens, merges, added, pattern=pattern, ignore_merges=bool(model.get("ignore_merges")),
                             special_ids=special_ids)
        except ValueError as exc:
            raise self.fail("model", str(exc)) from None

    def check_model_options(self, model: dict[str, Any]) -> None:
        if model.get("type", "BPE") != "BPE":
            raise self.fail("model.type", f"{model.get('type')!r} is not supported; fastllm reads BPE models")
        unsupported = {"dropout": (None, 0, 0.0), "continuing_subword_prefix": (None, ""),
                       "end_of_word_suffix": (None, ""), "byte_fallback": (None, False)}
        for key, fine in unsupported.items():
            if model.get(key) not in fine:
                raise self.fail(f"model.{key}", f"{model.get(key)!r} is not supported for byte-level BPE")

    def check_normalizer(self) -> None:
        normalizer = self.obj.get("normalizer")
        if normalizer is None:
            return
        if not isinstance(normalizer, dict):
            raise self.fail("normalizer", f"expected an object or null, got {type(normalizer).__name__}")
        if normalizer.get("type") == "Sequence" and not normalizer.get("normalizers"):
            return
        raise self.fail("normalizer", f"{normalizer.get('type')!r} is not supported; fastllm encodes raw text")

    def pattern(self) -> str:
        pre = self.obj.get("pre_tokenizer")
        if not isinstance(pre, dict):
            raise self.fail("pre_tokenizer", "missing; expected a byte-level pre-tokenizer")
        if pre.get("type") == "ByteLevel":
            self.check_byte_level(pre, "pre_tokenizer")
            if not pre.get("use_regex", True):
                raise self.fail("pre_tokenizer", "ByteLevel without use_regex (no split) is not supported")
            return "gpt2"
        steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
        if (not isinstance(steps, list) or len(steps) != 2 or not all(isinstance(x, dict) for x in steps)
                or steps[0].get("type") not in ("Split", "Digits") or steps[1].get("type") != "ByteLevel"):
            raise self.fail("pre_tokenizer", f"{pre.get('type')!r} is not supported; expected ByteLevel, "
                            "Sequence[Split(regex), ByteLevel] or Sequence[Digits, ByteLevel]")
        first, byte_level = steps
        self.check_byte_level(byte_level, "pre_tokenizer.pretokenizers[1]")
        if first["type"] == "Digits":  # SmolLM2: each digit alone, then GPT-2's split
            if first.get("individual_digits") is not True:
                raise self.fail("pre_tokenizer.pretokenizers[0]", "Digits(individual_digits=false) is not supported; "
                                "only individual digits (SmolLM2's split)")
            if not byte_level.get("use_regex", True):
                raise self.fail("pre_tokenizer.pretokenizers[1]", "ByteLevel use_regex=false after Digits is not "
                                "supported; expected use_regex=true (SmolLM2's split)")
            return "smollm"
        split = first
        regex = split.get("pattern").get("Regex") if isinstance(split.get("pattern"), dict) else None
        name = pattern_name(regex) if isinstance(regex, str) else None
        if name is None or split.get("behavior") != "Isolated" or split.get("invert"):
            raise self.fail("pre_tokenizer.pretokenizers[0]", f"split {regex!r} ({split.get('behavior')}) is not "
                            "one of the supported patterns (LLaMA-3/cl100k, GPT-2, SmolLM)")
        if byte_level.get("use_regex", True):
            raise self.fail("pre_tokenizer.pretokenizers[1]", "ByteLevel use_regex=true after a Split is not supported")
        return name

    def check_byte_level(self, step: dict[str, Any], field: str) -> None:
        if step.get("add_prefix_space"):
            raise self.fail(field, "add_prefix_space=true is not supported")

    def added_tokens(self) -> list[AddedToken]:
        out, seen = [], set()
        entries = self.obj.get("added_tokens") or []
        if not isinstance(entries, list):
            raise self.fail("added_tokens", f"expected a list, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            field = f"added_tokens[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not entry["content"]:
                raise self.fail(field, "expected an object with a non-empty 'content'")
            if not isinstance(entry.get("id"), int) or isinstance(entry["id"], bool) or entry["id"] < 0:
                raise self.fail(field, f"invalid id {entry.get('id')!r}")
            for flag in ("single_word", "lstrip", "rstrip"):
                if entry.get(flag):
                    raise self.fail(field, f"{flag}=true ({entry['content']!r}) is not supported")
            if entry["content"] in seen:
                raise self.fail(field, f"duplicate added token {entry['content']!r}")
            seen.add(entry["content"])
            out.append(AddedToken(entry["content"], entry["id"], bool(entry.get("special", False))))
        return out

    def vocab(self, model: dict[str, Any], added: dict[int, AddedToken]) -> tuple[list[bytes | None], dict[str, int]]:
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or not vocab:
            raise self.fail("model.vocab", "missing or empty")
        ids = list(vocab.values())
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise self.fail("model.vocab", "token ids must be non-negative integers")
        if len(set(ids)) != len(ids):
            raise self.fail("model.vocab", "two tokens share an id")
        by_id: dict[int, bytes] = {}
        for string, i in vocab.items():
            data = token_to_bytes(string)
            if data is None or not data:
                if i in added and added[i].content == string:
                    continue  # a special token also listed in the model vocab (GPT-2's <|endoftext|>)
                raise self.fail("model.vocab", f"token {string!r} (id {i}) is not byte-level; fastllm reads "
                                "byte-level BPE (ByteLevel pre-tokenizer) only")
            by_id[i] = data
        # Ids size the tables built from them (and the embedding a model needs): a stray huge id
        # must not make us allocate gigabytes. Real vocabularies are dense; allow generous gaps.
        used = len(set(ids) | set(added))
        top = max([*ids, *added])
        if top >= 2 * used + 1024:
            raise self.fail("model.vocab" if top in by_id else "added_tokens", f"token id {top} is far above "
                            f"the {used} ids in use; token ids must be (nearly) contiguous from 0")
        tokens: list[bytes | None] = [None] * (max(ids) + 1)
        for i, data in by_id.items():
            tokens[i] = data
        return tokens, vocab

    def merges(self, model: dict[str, Any], vocab: dict[str, int]) -> list[tuple[int, int]]:
        merges = model.get("merges")
        if not isinstance(merges, list):
            raise self.fail("model.merges", "missing; expected a list")
        out = []
        for rank, merge in enumerate(merges):
            if isinstance(merge, str):
                parts = merge.split(" ")
            elif isinstance(merge, list):
                parts = merge
            else:
                parts = []
            if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
                raise self.fail(f"model.merges[{rank}]", f"{merge!r} is not a pair of tokens")
            left, right = vocab.get(parts[0]), vocab.get(parts[1])
            if left is None or right is None:
                missing = parts[0] if left is None else parts[1]
                raise self.fail(f"model.merges[{rank}]", f"token {missing!r} is not in the vocabulary")
            out.append((left, right))
        return out
