"""The tokenizer a GGUF file carries (tokenizer.ggml.*), as our byte-level BPE `Tokenizer`.

    info = read_gguf_tokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
    info.tokenizer.encode("Hello")        # the same ids as llama.cpp and transformers
    info.eos_id, info.chat_template       # what generation needs beyond the vocabulary
    info.tokenizer.eos_id                 # the file's ids are the tokenizer's too (special_ids)

Read: tokenizer.ggml.model "gpt2" (byte-level BPE: tokens spelled in GPT-2's byte alphabet,
merges as "left right" strings, in rank order), token_type (control and unknown tokens become
special added tokens, user-defined ones non-special added tokens, unused ones are holes), and
tokenizer.ggml.pre, llama.cpp's name for the split, mapped to the C++ pre-tokenizers:

    llama-bpe, llama3, llama-v3 -> llama3 (with ignore_merges, as llama.cpp encodes them)
    gpt-2                       -> gpt2
    smollm                      -> smollm (every digit alone, then GPT-2's split)

Anything else (SentencePiece "llama" vocabularies, other splits, a missing pre name, which
llama.cpp reads as its own "default" split) is a one-line error naming the file and the value:
encoding differently from the model's own tokenizer would be a silent error.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

from fastllm.tokenizer.bpe import AddedToken, Tokenizer
from fastllm.tokenizer.bytelevel import token_to_bytes
from fastllm.utils.errors import InputFormatError

# llama.cpp's token types (llama_token_type / gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.pre -> (our pattern, ignore_merges), as llama.cpp's llama-vocab.cpp sets them.
GGUF_PRE_PATTERNS: dict[str, tuple[str, bool]] = {
    "llama-bpe": ("llama3", True), "llama3": ("llama3", True), "llama-v3": ("llama3", True),
    "gpt-2": ("gpt2", False),
    "smollm": ("smollm", False),
}


# Tokenizer.special_ids role -> the tokenizer.ggml.* key that states it.
GGUF_ID_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}


class GGUFTokenizerError(InputFormatError):
    """The GGUF file holds no tokenizer, or one fastllm cannot reproduce exactly."""


@dataclass(frozen=True)
class GGUFTokenizer:
    """A GGUF file's tokenizer and the token settings stored beside it."""

    tokenizer: Tokenizer
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    pre: str  # tokenizer.ggml.pre as written in the file

    def token(self, token_id: int | None) -> str | None:
        return None if token_id is None else self.tokenizer.id_to_token(token_id)


def read_gguf_tokenizer(path: str | Path) -> GGUFTokenizer:
    """The tokenizer of a GGUF file (its header only is parsed; tensors are not read)."""
    from fastllm.quant.gguf_io import GGUFFile

    gf = GGUFFile(path)
    try:
        metadata = gf.metadata
    finally:
        gf.close()
    return tokenizer_from_metadata(metadata, str(path))


def tokenizer_from_metadata(meta: dict[str, Any], where: str) -> GGUFTokenizer:
    def fail(key: str, problem: str) -> GGUFTokenizerError:
        return GGUFTokenizerError(f"{where}: {key}: {problem}")

    model = meta.get("tokenizer.ggml.model")
    if model is None:
        raise GGUFTokenizerError(f"{where}: no tokenizer.ggml.model; the file holds no tokenizer (pass --tokenizer "
                                 "path/to/tokenizer.json)")
    if model != "gpt2":
        raise fail("tokenizer.ggml.model", f"{model!r} is not supported; fastllm reads byte-level BPE ('gpt2') "
                   "vocabularies only")
    pre = meta.get("tokenizer.ggml.pre")
    if pre not in GGUF_PRE_PATTERNS:
        raise fail("tokenizer.ggml.pre", f"{pre!r} is not supported; fastllm splits text exactly as "
                   f"{', '.join(GGUF_PRE_PATTERNS)}")
    pattern, ignore_merges = GGUF_PRE_PATTERNS[pre]

    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise fail("tokenizer.ggml.tokens", "missing, empty or not a list of strings")
    types = meta.get("tokenizer.ggml.token_type")
    if types is None:
        types = [NORMAL] * len(tokens)
    elif not hasattr(types, "__len__") or not all(isinstance(t, Integral) for t in types):
        raise fail("tokenizer.ggml.token_type", "not a list of integers")
    types = [int(t) for t in types]
    if len(types) != len(tokens):
        raise fail("tokenizer.ggml.token_type", f"{len(types)} types for {len(tokens)} tokens")

    model_tokens: list[bytes | None] = [None] * len(tokens)
    added: list[AddedToken] = []
    added_ids: dict[str, int] = {}
    by_string: dict[str, int] = {}
    for i, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in (CONTROL, UNKNOWN, USER_DEFINED):
            # Written as raw text, not in the byte alphabet; matched whole before the split.
            if text in added_ids:
                raise fail("tokenizer.ggml.tokens", f"tokens {added_ids[text]} and {i} are both {text!r}; "
                           "an added token's text must name one id")
            if text:
                added.append(AddedToken(text, i, special=kind != USER_DEFINED))
                added_ids[text] = i
            continue
        if kind == UNUSED:
            continue
        if kind != NORMAL:
            raise fail("tokenizer.ggml.token_type", f"token {i} ({text!r}) has type {kind}, which a byte-level "
                       "BPE vocabulary does not use")
        data = token_to_bytes(text)
        if not data:
            raise fail("tokenizer.ggml.tokens", f"token {i} ({text!r}) is not spelled in the byte-level alphabet")
        model_tokens[i] = data
        by_string.setdefault(text, i)
    merges = _merges(meta.get("tokenizer.ggml.merges"), by_string, fail)

    def token_id(key: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{key}")
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(tokens):
            raise fail(f"tokenizer.ggml.{key}", f"{value!r} is not a token id of the {len(tokens)} tokens")
        return value

    ids = {role: token_id(key) for role, key in GGUF_ID_KEYS.items()}
    try:
        tok = Tokenizer(model_tokens, merges, added, pattern=pattern, ignore_merges=ignore_merges, special_ids=ids)
    except ValueError as exc:
        raise fail("tokenizer.ggml.merges", str(exc)) from None
    template = meta.get("tokenizer.chat_template")
    return GGUFTokenizer(
        tokenizer=tok, bos_id=ids["bos"], eos_id=ids["eos"], unk_id=ids["unk"], pad_id=ids["pad"],
        # llama.cpp adds BOS by default for LLaMA-3 files that do not say.
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", pattern == "llama3")),
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        chat_template=template if isinstance(template, str) else None, pre=pre)


def _merges(merges: Any, by_string: dict[str, int], fail) -> list[tuple[int, int]]:
    if not isinstance(merges, list) or not all(isinstance(m, str) for m in merges):
        raise fail("tokenizer.ggml.merges", "missing or not a list of strings")
    out = []
    for rank, merge in enumerate(merges):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise fail("tokenizer.ggml.merges", f"merge {rank} {merge!r} is not 'left right'")
        left, right = by_string.get(parts[0]), by_string.get(parts[1])
        if left is None or right is None:
            missing = parts[0] if left is None else parts[1]
            raise fail("tokenizer.ggml.merges", f"merge {rank}: token {missing!r} is not in the vocabulary")
        out.append((left, right))
    return out
