"""`Tokenizer`: byte-level BPE over the C++ core (fastllm._C.bpe).

    tok = Tokenizer.from_file("tokenizer.json")          # ours or an HF ByteLevel BPE file
    tok = Tokenizer.from_gguf("model.gguf")              # the vocabulary a llama.cpp GGUF carries
    ids = tok.encode("Hello world")                      # list[int]; GIL released while encoding
    tok.encode_batch(texts, num_threads=2)               # threads in C++
    tok.decode(ids)                                      # bytes joined, invalid UTF-8 -> U+FFFD

Encoding follows HF tokenizers' BPE model (lowest merge rank first, leftmost first). Special
tokens follow tiktoken: by default their text in the input is an error (`disallowed_special=
"all"`); `allowed_special={"<|end_of_text|>"}` or `"all"` encodes them as their ids, and
`disallowed_special=()` encodes them as ordinary text. Added tokens that are not special (HF's
`"special": false`) are always encoded as their ids, as `tokenizers` does; these options govern
special tokens only. Strings with lone surrogates (which have no
UTF-8 form) are encoded with each lone surrogate replaced by U+FFFD, as tiktoken does.

bos_id / eos_id / unk_id / pad_id are the ids the tokenizer's source states (a GGUF file's
tokenizer.ggml.*_token_id, the tokenizer_config.json beside a tokenizer.json); where it states
none, bos and eos are guessed from the token names (<|begin_of_text|>, <|end_of_text|>,
<|endoftext|>) and pad from <|pad|>.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastllm import _ext
from fastllm.tokenizer.bytelevel import bytes_to_token, token_to_bytes
from fastllm.tokenizer.patterns import PATTERN_IDS, check_pattern
from fastllm.utils.errors import FastLLMError

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
GPT2_EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_ROLES = ("bos", "eos", "unk", "pad")  # the keys of Tokenizer(special_ids=...)

SpecialSet = Literal["all"] | Iterable[str]
_IMMUTABLE = (str, tuple, frozenset)
_PARALLEL_MIN_CHARS = 1 << 16  # below this a text is not worth cutting (C++: 256 KiB of UTF-8)


class DisallowedSpecialTokenError(FastLLMError, ValueError):
    """The text contains a special token's string and the caller did not say how to treat it.
    `token` is that string, `text_index` the index of the text in a batch."""

    def __init__(self, message: str, token: str = "", text_index: int = 0) -> None:
        super().__init__(message)
        self.token, self.text_index = token, text_index


@dataclass(frozen=True)
class AddedToken:
    content: str
    id: int
    special: bool = True


def default_threads() -> int:
    """torch's thread count when torch is already imported (one knob for both), else
    OMP_NUM_THREADS, else the CPUs this process may use. Importing torch just to ask is avoided."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return max(1, torch.get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def replace_surrogates(text: str) -> str:
    """Pairs surrogates into characters and turns lone ones into U+FFFD (tiktoken's rule)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """A byte-level BPE tokenizer. Build one with `Tokenizer.from_file`, `train_bpe`, or directly:

    tokens[id] holds the bytes of model token `id` (None where no model token has that id),
    merges lists (left id, right id) in rank order (each result must be a token), added_tokens the
    special tokens (matched in text before pre-tokenization), special_ids the bos/eos/unk/pad ids
    the source states ({"bos": 1, "eos": 2}; roles left out are guessed from token names)."""

    def __init__(self, tokens: Sequence[bytes | None], merges: Sequence[tuple[int, int]],
                 added_tokens: Iterable[AddedToken] = (), *, pattern: str = "llama3",
                 ignore_merges: bool = False, special_ids: Mapping[str, int | None] | None = None) -> None:
        self._pattern = check_pattern(pattern)
        self._tokens = list(tokens)
        self._merges = [(int(a), int(b)) for a, b in merges]
        self._added = sorted(added_tokens, key=lambda t: t.id)
        self._ignore_merges = bool(ignore_merges)
        self._bytes_to_id: dict[bytes, int] = {}
        for i, token in enumerate(self._tokens):
            if token is not None:
                self._bytes_to_id.setdefault(token, i)
        self._special = {t.content: t.id for t in self._added}
        for t in self._added:  # one id per text, or special_tokens and the encoder would disagree
            if self._special[t.content] != t.id:
                raise ValueError(f"added tokens {t.id} and {self._special[t.content]} have the same text "
                                 f"{t.content!r}")
        self._special_order = [t.content for t in self._added]
        self._all_special_indices = list(range(len(self._added)))
        # Non-special added tokens are matched in all text (HF); the options choose among the rest.
        self._always = [i for i, t in enumerate(self._added) if not t.special]
        self._controlled = [i for i, t in enumerate(self._added) if t.special]
        self._vocab_size = max([len(self._tokens) - 1, *(t.id for t in self._added), -1]) + 1
        self._ids = self._check_special_ids(special_ids or {})
        self._model = self._build_model()
        self._json: str | None = None
        self._resolved: dict[tuple, tuple[list | None, list | None]] = {}

    def _check_special_ids(self, ids: Mapping[str, int | None]) -> dict[str, int]:
        out = {}
        for role, value in ids.items():
            if role not in SPECIAL_ROLES:
                raise ValueError(f"special_ids: unknown role {role!r}; expected {', '.join(SPECIAL_ROLES)}")
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < self._vocab_size:
                raise ValueError(f"{role} id {value!r} is not a token id (vocabulary of {self._vocab_size})")
            out[role] = value
        return out

    def _build_model(self) -> Any:
        id_to_bytes = [b""] * self._vocab_size
        for i, token in enumerate(self._tokens):
            if token is not None:
                id_to_bytes[i] = token
        for t in self._added:
            content = t.content.encode("utf-8")
            if id_to_bytes[t.id] and id_to_bytes[t.id] != content:
                raise ValueError(f"special token {t.content!r} has id {t.id}, which belongs to another token")
            id_to_bytes[t.id] = content
        triples = []
        for rank, (a, b) in enumerate(self._merges):
            left, right = self.token_bytes(a), self.token_bytes(b)
            result = self._bytes_to_id.get(left + right) if left and right else None
            if result is None:
                raise ValueError(f"merge {rank} ({a}, {b}) does not produce a token of the vocabulary")
            triples.append((a, b, result))
        specials = [(t.content.encode("utf-8"), t.id) for t in self._added]
        return _ext.cpu().bpe.Model(id_to_bytes, triples, specials, PATTERN_IDS[self._pattern],
                                     self._ignore_merges)

    # ------------------------------------------------------------------ files
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads an HF tokenizer.json holding a byte-level BPE (ours or made by `tokenizers`), or
        the tokenizer of a .gguf file (from_gguf)."""
        from fastllm.tokenizer.hf_json import read_tokenizer_json

        path = Path(path)
        if path.suffix == ".gguf" and path.is_file():
            return cls.from_gguf(path)
        return read_tokenizer_json(path)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> Tokenizer:
        """The byte-level BPE tokenizer stored in a llama.cpp GGUF file (tokenizer.ggml.*). Its
        bos/eos ids and chat template: fastllm.tokenizer.gguf_read.read_gguf_tokenizer."""
        from fastllm.tokenizer.gguf_read import read_gguf_tokenizer

        return read_gguf_tokenizer(path).tokenizer

    @classmethod
    def from_json_str(cls, text: str, where: str = "<tokenizer.json>", *,
                      special_ids: Mapping[str, int | None] | None = None) -> Tokenizer:
        from fastllm.tokenizer.hf_json import parse_tokenizer_json

        return parse_tokenizer_json(text, where, special_ids=special_ids)

    def to_json_str(self) -> str:
        """The canonical tokenizer.json text (deterministic: equal tokenizers, equal text)."""
        if self._json is None:
            from fastllm.tokenizer.hf_json import dump_tokenizer_json

            self._json = dump_tokenizer_json(self)
        return self._json

    def save(self, path: str | os.PathLike) -> Path:
        """Writes tokenizer.json atomically; `path` may be a directory."""
        from fastllm.utils.atomic import write_text

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        write_text(path, self.to_json_str())
        return path

    def hash(self) -> str:
        """sha256 (hex) of the canonical tokenizer.json."""
        return hashlib.sha256(self.to_json_str().encode("utf-8")).hexdigest()

    def __reduce__(self):  # for multiprocessing: rebuilt from its JSON, no code objects involved
        return (_from_json_and_ids, (self.to_json_str(), self._ids))

    # ------------------------------------------------------------------ encoding
    def _special_indices(self, names: Iterable[str]) -> list[int]:
        wanted = set(names)
        unknown = wanted - self._special.keys()
        if unknown:
            raise ValueError(f"not special tokens of this tokenizer: {', '.join(sorted(unknown))}")
        return [i for i, name in enumerate(self._special_order) if name in wanted]

    def _resolve(self, allowed_special: SpecialSet, disallowed_special: SpecialSet) -> tuple[list | None, list | None]:
        # Memoised for immutable options (the defaults, "all", tuples, frozensets): a per-document
        # encode loop would otherwise spend a sizeable part of its time here. The lists are never
        # mutated.
        if type(allowed_special) not in _IMMUTABLE or type(disallowed_special) not in _IMMUTABLE:
            return self._resolve_uncached(allowed_special, disallowed_special)
        key = (allowed_special, disallowed_special)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolve_uncached(allowed_special, disallowed_special)
            if len(self._resolved) < 64:
                self._resolved[key] = resolved
        return resolved

    def _resolve_uncached(self, allowed_special: SpecialSet,
                          disallowed_special: SpecialSet) -> tuple[list | None, list | None]:
        if not self._added:
            return None, None
        if disallowed_special == "all" and not allowed_special:  # the default: every special is an error
            return self._always or None, self._controlled or None
        allowed = set(self._all_special_indices if allowed_special == "all"
                      else self._special_indices(allowed_special) if allowed_special else ())
        allowed.update(self._always)
        if disallowed_special == "all":
            disallowed = [i for i in self._controlled if i not in allowed]
        else:
            disallowed = self._special_indices(disallowed_special) if disallowed_special else []
            disallowed = [i for i in disallowed if i not in self._always]
        return sorted(allowed) or None, disallowed or None

    def _check_disallowed(self, texts: Sequence[str], indices: list[int] | None) -> None:
        if not indices:
            return
        for i, text in enumerate(texts):
            hit = self._model.find_special(text, indices)
            if hit is not None:
                name = self._special_order[hit[1]]
                where = f"text {i}" if len(texts) > 1 else "the text"
                raise DisallowedSpecialTokenError(
                    f"{where} contains the special token {name!r}; pass allowed_special={{{name!r}}} (or 'all') "
                    f"to encode it as a special token, or disallowed_special=() to encode it as plain text",
                    name, i)

    def encode(self, text: str, *, allowed_special: SpecialSet = (), disallowed_special: SpecialSet = "all",
               num_threads: int | None = None) -> list[int]:
        """Token ids of `text` (no BOS/EOS added). A text of 256 KiB or more is cut at points
        where the ids cannot change and encoded on `num_threads` C++ threads (default:
        default_threads()); shorter texts, or num_threads=1, use the calling thread only."""
        allowed, disallowed = self._resolve(allowed_special, disallowed_special)
        threads = self._threads_for(text, num_threads)
        try:
            self._check_disallowed((text,), disallowed)
            return self._model.encode(text, allowed, threads)
        except UnicodeEncodeError:
            return self.encode(replace_surrogates(text), allowed_special=allowed_special,
                               disallowed_special=disallowed_special, num_threads=num_threads)

    def encode_ordinary(self, text: str, *, num_threads: int | None = None) -> list[int]:
        """Token ids of `text` with special-token strings encoded as plain text."""
        threads = self._threads_for(text, num_threads)
        try:
            return self._model.encode(text, self._always or None, threads)
        except UnicodeEncodeError:
            return self._model.encode(replace_surrogates(text), self._always or None, threads)

    @staticmethod
    def _threads_for(text: str, num_threads: int | None) -> int:
        if len(text) < _PARALLEL_MIN_CHARS:  # the C++ side decides by bytes; this skips the lookup
            return 1
        return default_threads() if num_threads is None else max(1, int(num_threads))

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None, *,
                     allowed_special: SpecialSet = (), disallowed_special: SpecialSet = "all") -> list[list[int]]:
        """encode() of every text, on `num_threads` C++ threads (default: default_threads())."""
        return self._batch(self._model.encode_batch, texts, num_threads, allowed_special, disallowed_special)

    def encode_batch_flat(self, texts: Sequence[str], num_threads: int | None = None, *,
                          allowed_special: SpecialSet = (), disallowed_special: SpecialSet = "all"):
        """encode_batch as numpy arrays: (tokens uint32, offsets int64 of len(texts) + 1), text i's
        ids being tokens[offsets[i]:offsets[i + 1]]. No Python int per token: for bulk work."""
        return self._batch(self._model.encode_batch_flat, texts, num_threads, allowed_special, disallowed_special)

    def _batch(self, encode, texts, num_threads, allowed_special, disallowed_special):
        texts = texts if isinstance(texts, list) else list(texts)
        allowed, disallowed = self._resolve(allowed_special, disallowed_special)
        threads = default_threads() if num_threads is None else max(1, int(num_threads))
        try:
            self._check_disallowed(texts, disallowed)
            return encode(texts, allowed, threads)
        except UnicodeEncodeError:
            texts = [replace_surrogates(t) for t in texts]
            self._check_disallowed(texts, disallowed)
            return encode(texts, allowed, threads)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token bytes joined. `ids`: a list, any sequence, a 1-D integer numpy array or an iterable."""
        return self._model.decode(ids if hasattr(ids, "__len__") else list(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: token bytes joined, invalid UTF-8 replaced with U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ vocabulary
    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def ignore_merges(self) -> bool:
        return self._ignore_merges

    @property
    def vocab_size(self) -> int:
        """One more than the largest token id (the rows an embedding table needs)."""
        return self._vocab_size

    @property
    def merges(self) -> list[tuple[int, int]]:
        return list(self._merges)

    @property
    def tokens(self) -> list[bytes | None]:
        """Model token bytes by id (None where no model token has the id)."""
        return list(self._tokens)

    @property
    def added_tokens(self) -> list[AddedToken]:
        return list(self._added)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def special_ids(self) -> dict[str, int]:
        """The bos/eos/unk/pad ids the tokenizer's source states (no guesses)."""
        return dict(self._ids)

    @property
    def bos_id(self) -> int | None:
        """The stated bos id, else <|begin_of_text|>'s, else None."""
        return self._ids["bos"] if "bos" in self._ids else self._special.get(BOS_TOKEN)

    @property
    def eos_id(self) -> int | None:
        """The stated eos id, else <|end_of_text|>'s (LLaMA-3's name), else GPT-2's <|endoftext|>'s."""
        if "eos" in self._ids:
            return self._ids["eos"]
        return self._special.get(EOS_TOKEN, self._special.get(GPT2_EOS_TOKEN))

    @property
    def unk_id(self) -> int | None:
        """The stated unknown-token id (byte-level BPE never produces it), else None."""
        return self._ids.get("unk")

    @property
    def pad_id(self) -> int | None:
        """The stated padding id, else <|pad|>'s, else None."""
        return self._ids["pad"] if "pad" in self._ids else self._special.get(PAD_TOKEN)

    def token_bytes(self, token_id: int) -> bytes | None:
        """The bytes of a model token or the UTF-8 of a special token; None for an unused id."""
        if 0 <= token_id < len(self._tokens) and self._tokens[token_id] is not None:
            return self._tokens[token_id]
        for t in self._added:
            if t.id == token_id:
                return t.content.encode("utf-8")
        return None

    def token_to_id(self, token: str) -> int | None:
        """Id of a token spelled as in tokenizer.json: a special token's text, or a model token in
        byte-level characters ('Ġthe' for ' the')."""
        if token in self._special:
            return self._special[token]
        data = token_to_bytes(token)
        return None if data is None else self._bytes_to_id.get(data)

    def id_to_token(self, token_id: int) -> str | None:
        for t in self._added:
            if t.id == token_id:
                return t.content
        if 0 <= token_id < len(self._tokens) and self._tokens[token_id] is not None:
            return bytes_to_token(self._tokens[token_id])
        return None

    # ------------------------------------------------------------------ exports
    def to_tiktoken(self, name: str = "fastllm"):
        """A tiktoken.Encoding that encodes like this tokenizer (ranks = token ids)."""
        from fastllm.tokenizer.exports import to_tiktoken

        return to_tiktoken(self, name)

    def gguf_fields(self) -> dict[str, Any]:
        """The tokenizer.ggml.* key/values a GGUF file needs (llama.cpp's 'gpt2' BPE model)."""
        from fastllm.tokenizer.exports import gguf_fields

        return gguf_fields(self)

    gguf_metadata = gguf_fields

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, pattern={self._pattern!r}, "
                f"special_tokens={len(self._added)})")


def _from_json_and_ids(text: str, special_ids: Mapping[str, int]) -> Tokenizer:
    return Tokenizer.from_json_str(text, "<pickled tokenizer>", special_ids=special_ids)
