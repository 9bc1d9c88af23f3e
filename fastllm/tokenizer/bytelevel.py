"""GPT-2's byte <-> character mapping used by byte-level BPE files (tokenizer.json, GGUF).

Token strings in those files are bytes spelled with one printable character per byte: the
printable Latin-1 bytes stand for themselves and the other 68 bytes map to U+0100.. in order
(so a space is 'Ġ' and a newline 'Ċ'). Internally fastllm keeps tokens as raw bytes.
"""

from __future__ import annotations

import functools


@functools.cache
def byte_to_char() -> tuple[str, ...]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@functools.cache
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_char())}


def bytes_to_token(data: bytes) -> str:
    chars = byte_to_char()
    return "".join(chars[b] for b in data)


def token_to_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token string spells, or None if it uses other characters."""
    table = char_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return None
