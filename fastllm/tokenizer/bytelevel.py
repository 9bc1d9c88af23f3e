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


@functools.cache
def _to_chars() -> dict[int, str]:
    """str.translate table: Latin-1 character of byte b -> its byte-level character."""
    return {b: c for b, c in enumerate(byte_to_char())}


@functools.cache
def _to_latin1() -> dict[int, str | None]:
    """str.translate table back; Latin-1 characters outside the alphabet are deleted (so a
    length change reveals them), characters above U+00FF outside it fail the Latin-1 encode."""
    table: dict[int, str | None] = {b: None for b in range(256)}
    table.update({ord(c): chr(b) for b, c in enumerate(byte_to_char())})
    return table


def bytes_to_token(data: bytes) -> str:
    return data.decode("latin-1").translate(_to_chars())


def token_to_bytes(token: str) -> bytes | None:
    """The bytes a byte-level token string spells, or None if it uses other characters."""
    latin1 = token.translate(_to_latin1())
    if len(latin1) != len(token):
        return None
    try:
        return latin1.encode("latin-1")
    except UnicodeEncodeError:
        return None
