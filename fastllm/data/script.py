"""Unicode-script ratios for the language/script check: which fraction of a text's letters belong
to the allowed scripts (so a Hindi corpus keeps Devanagari text and drops the rest).

The per-code-point class table is built once per set of scripts from the `regex` module's
Unicode script data, then a document is classified with one vectorised numpy lookup.
"""

from __future__ import annotations

import functools

import numpy as np

from fastllm.utils.errors import ConfigError

# The non-ASCII characters whose str.lower() holds ASCII (U+0130 -> "i\u0307", KELVIN SIGN -> "k"),
# so an ASCII word can occur in text.lower() only where it occurs, ASCII-case-insensitively, in a
# text free of them (used by the C++ searches of quality.py and pii.py);
# tests/data/test_text_native.py checks this against the running Python's Unicode data.
LOWER_TO_ASCII = (0x130, 0x212A)

_TABLE_SIZE = 0x30000  # the scripts used for text live below U+30000; above counts as "other"
NOT_LETTER, ALLOWED, OTHER = 0, 1, 2


@functools.cache
def _all_code_points() -> str:
    return "".join(chr(c) if not 0xD800 <= c <= 0xDFFF else " " for c in range(_TABLE_SIZE))


@functools.cache
def script_table(scripts: tuple[str, ...]) -> np.ndarray:
    """uint8 class per code point: NOT_LETTER, ALLOWED (a letter of one of `scripts`) or OTHER."""
    import regex

    text = _all_code_points()
    table = np.zeros(_TABLE_SIZE, dtype=np.uint8)
    for match in regex.finditer(r"\p{L}+", text):
        table[match.start():match.end()] = OTHER
    for name in scripts:
        try:
            pattern = regex.compile(rf"\p{{Script={name}}}+")
        except regex.error:
            raise ConfigError(f"quality.scripts: unknown Unicode script {name!r} (e.g. Latin, Devanagari, "
                              "Cyrillic, Han, Arabic)") from None
        for match in pattern.finditer(text):
            span = table[match.start():match.end()]
            span[span == OTHER] = ALLOWED
    return table


def allowed_script_fraction(text: str, scripts: tuple[str, ...]) -> float:
    """Fraction of letters in `text` that belong to `scripts`; 1.0 for a text without letters."""
    table = script_table(scripts)
    if text.isascii():
        classes = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    else:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        classes = np.where(codes < _TABLE_SIZE, table[np.minimum(codes, _TABLE_SIZE - 1)], OTHER)
    counts = np.bincount(classes, minlength=3)
    letters = int(counts[ALLOWED] + counts[OTHER])
    return 1.0 if letters == 0 else float(counts[ALLOWED]) / letters
