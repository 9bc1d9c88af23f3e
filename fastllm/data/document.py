"""The unit every stage works on: a document {id, source, text, meta}, and the record a reader
leaves behind when it cannot produce one (a quarantined record, with its reason and location)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def utf8_length(text: str) -> int:
    """Bytes of `text` in UTF-8. str.isascii() is O(1) in CPython and spares most documents the
    copy that encode() makes (every clean step counts bytes in and out)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass
class Document:
    id: str
    source: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return utf8_length(self.text)


@dataclass
class Quarantined:
    """A record a reader could not turn into a document; the rest of its file is still read."""

    source: str
    file: str
    location: str  # "line 17", "block 3", "row 120", "byte 40960"
    reason: str    # invalid_json, invalid_utf8, truncated_stream, record_too_large, ...
    detail: str = ""
    nbytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "location": self.location, "reason": self.reason,
                "detail": self.detail, "bytes": self.nbytes}
