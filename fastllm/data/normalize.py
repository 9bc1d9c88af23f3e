"""Text normalization: mojibake repair (optional), Unicode NFC, control-character removal and
whitespace normalization. Each step is a switch in NormalizeConfig; ASCII text skips the steps
that cannot change it.

`normalize_ref` is the truth: one regex per step. `Normalizer` gives the same strings faster: the
Unicode steps (mojibake, NFC) stay in Python and run only on non-ASCII text, the control and
whitespace steps run in C++ (csrc/cpu/text_normalize.cpp), which first checks with one scan
whether any step can change the text, as it rarely does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastllm import _ext


@dataclass
class NormalizeConfig:
    enabled: bool = field(default=True, metadata={"help": "run the normalization stage"})
    nfc: bool = field(default=True, metadata={"help": "Unicode NFC composition"})
    remove_control: bool = field(default=True, metadata={"help": "drop control and zero-width characters "
                                                                 "(keeps newline and tab)"})
    whitespace: bool = field(default=True, metadata={"help": "unify line breaks and Unicode spaces, strip "
                                                             "line ends, at most one blank line in a row"})
    collapse_spaces: bool = field(default=True, metadata={"help": "collapse runs of spaces to one"})
    fix_mojibake: bool = field(default=False, metadata={"help": "repair UTF-8 text that was decoded as "
                                                                "cp1252/latin-1 (e.g. 'cafÃ©' -> 'café')"})


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u2060\ufeff\ufffe]")
_LINE_BREAKS = re.compile("\r\n?|[\u2028\u2029\x85]")
_UNICODE_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_SPACE_RUNS = re.compile(" {2,}")
_TRAILING = re.compile("[ \t]+\n")
_BLANK_RUNS = re.compile("\n{3,}")

# A UTF-8 lead byte read as cp1252/latin-1, followed by one to three continuation bytes read the
# same way: the signature of mojibake.
_CONTINUATION = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014" \
                "\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
_MOJIBAKE = re.compile(f"(?:[\u00c2-\u00f4][{_CONTINUATION}]{{1,3}})+")


def _as_cp1252_bytes(text: str) -> bytes | None:
    out = bytearray()
    for ch in text:
        code = ord(ch)
        if code < 256:
            out.append(code)
            continue
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            return None
    return bytes(out)


def _repair(match: re.Match) -> str:
    raw = _as_cp1252_bytes(match.group(0))
    if raw is None:
        return match.group(0)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return match.group(0)


def fix_mojibake(text: str) -> str:
    return _MOJIBAKE.sub(_repair, text) if not text.isascii() else text


def _unicode_steps(text: str, c: NormalizeConfig) -> str:
    """Mojibake repair and NFC: only non-ASCII text can need them."""
    if text.isascii():
        return text
    if c.fix_mojibake:
        text = fix_mojibake(text)
    if c.nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


def normalize_ref(text: str, c: NormalizeConfig) -> str:
    """The reference: every step as its regex, in order."""
    if not c.enabled:
        return text
    ascii_only = text.isascii()
    text = _unicode_steps(text, c)
    if c.whitespace:
        text = _LINE_BREAKS.sub("\n", text)
    if c.remove_control:
        text = _CONTROL.sub("", text)
    if c.whitespace:
        if not ascii_only:
            text = _UNICODE_SPACES.sub(" ", text)
        if c.collapse_spaces:
            text = _SPACE_RUNS.sub(" ", text)
        text = _TRAILING.sub("\n", text)
        text = _BLANK_RUNS.sub("\n\n", text).strip()
    return text


class Normalizer:
    def __init__(self, config: NormalizeConfig):
        self.config = config

    def __call__(self, text: str) -> str:
        return self.normalize_many([text])[0]

    def normalize_many(self, texts: Sequence[str]) -> list[str]:
        c = self.config
        if not c.enabled:
            return list(texts)
        texts = [_unicode_steps(t, c) for t in texts]
        return _ext.cpu().text.normalize(texts, c.remove_control, c.whitespace, c.collapse_spaces)
