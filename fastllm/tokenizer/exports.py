"""Exports to tiktoken and to GGUF's tokenizer fields.

tiktoken merges by the rank of the merged token, where HF merges by the rank of the pair. The two
agree when every multi-byte token is the result of a merge and token ids grow with merge order:
true for tokenizers trained by BPE (ours and `tokenizers`'), which `to_tiktoken` checks.

GGUF follows llama.cpp's convert_hf_to_gguf for BPE vocabularies: tokenizer.ggml.model = "gpt2",
tokens in byte-level characters, merges as "left right", token types (1 normal, 3 control for
special tokens, 4 user-defined for other added tokens, 5 unused for ids no token has, which
llama.cpp names "[PAD<id>]"), and the pre-tokenizer name of our split pattern.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastllm.tokenizer.bytelevel import bytes_to_token
from fastllm.tokenizer.patterns import GGUF_PRE, PATTERNS
from fastllm.utils.errors import FastLLMError

if TYPE_CHECKING:
    from fastllm.tokenizer.bpe import Tokenizer

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


class ExportError(FastLLMError, ValueError):
    """The tokenizer cannot be expressed in the target format without changing its encodings."""


def mergeable_ranks(tok: Tokenizer) -> dict[bytes, int]:
    """tiktoken's bytes -> rank table (rank = token id), after checking it encodes like HF BPE."""
    tokens = tok.tokens
    special_ids = {t.id for t in tok.added_tokens}
    ranks = {t: i for i, t in enumerate(tokens) if t is not None and i not in special_ids}
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ExportError(f"tiktoken needs all 256 byte tokens; {len(missing)} are missing (e.g. byte {missing[0]})")
    produced, last = set(), -1
    for a, b in tok.merges:
        result = ranks[tokens[a] + tokens[b]]
        if result <= last:
            raise ExportError(f"merge ({a}, {b}) makes token {result}, not above the previous merge's {last}: "
                              "token ids do not follow merge order, so tiktoken ranks would merge differently")
        produced.add(result)
        last = result
    orphans = [i for t, i in ranks.items() if len(t) > 1 and i not in produced]
    if orphans:
        raise ExportError(f"token {orphans[0]} is not made by any merge; tiktoken would merge to it anyway")
    return ranks


def to_tiktoken(tok: Tokenizer, name: str = "fastllm"):
    import tiktoken

    return tiktoken.Encoding(name, pat_str=PATTERNS[tok.pattern], mergeable_ranks=mergeable_ranks(tok),
                             special_tokens=tok.special_tokens)


def write_tiktoken_file(tok: Tokenizer, path: str | Path) -> Path:
    """The .tiktoken text format (base64 token, space, rank per line), readable by
    tiktoken.load.load_tiktoken_bpe. The pattern and special tokens are not part of that format."""
    from fastllm.utils.atomic import write_text

    ranks = mergeable_ranks(tok)
    lines = [f"{base64.b64encode(t).decode('ascii')} {i}" for t, i in sorted(ranks.items(), key=lambda kv: kv[1])]
    write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def gguf_fields(tok: Tokenizer) -> dict[str, Any]:
    added = {t.id: t for t in tok.added_tokens}
    tokens, types = [], []
    model_tokens = tok.tokens
    for i in range(tok.vocab_size):
        if i in added:
            tokens.append(added[i].content)
            types.append(TOKEN_CONTROL if added[i].special else TOKEN_USER_DEFINED)
        elif i < len(model_tokens) and model_tokens[i] is not None:
            tokens.append(bytes_to_token(model_tokens[i]))
            types.append(TOKEN_NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
    merges = [f"{bytes_to_token(model_tokens[a])} {bytes_to_token(model_tokens[b])}" for a, b in tok.merges]
    fields: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": GGUF_PRE[tok.pattern],
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        # Our encode() adds no BOS/EOS; say so, so llama.cpp tokenizes prompts the same way.
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": False,
    }
    for key, token_id in (("bos_token_id", tok.bos_id), ("eos_token_id", tok.eos_id),
                          ("unknown_token_id", tok.unk_id), ("padding_token_id", tok.pad_id)):
        if token_id is not None:
            fields[f"tokenizer.ggml.{key}"] = token_id
    return fields
