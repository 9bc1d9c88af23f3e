"""Accounting: documents and bytes in and out of every stage, per source, with every drop reason,
so that for each stage and source docs_in == docs_out + sum of dropped docs exactly (and bytes_in ==
bytes_out + dropped bytes + bytes removed by edits such as normalization and redaction)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _empty() -> dict[str, Any]:
    return {"docs_in": 0, "bytes_in": 0, "docs_out": 0, "bytes_out": 0, "dropped": {}}


class StageStats:
    """Counters for one stage: per source, plus free-form extras (PII counts, matches, ...)."""

    def __init__(self) -> None:
        self.sources: dict[str, dict[str, Any]] = defaultdict(_empty)
        self.extra: dict[str, Any] = {}

    def seen(self, source: str, nbytes: int) -> None:
        s = self.sources[source]
        s["docs_in"] += 1
        s["bytes_in"] += nbytes

    def kept(self, source: str, nbytes: int) -> None:
        s = self.sources[source]
        s["docs_out"] += 1
        s["bytes_out"] += nbytes

    def dropped(self, source: str, reason: str, nbytes: int) -> None:
        d = self.sources[source]["dropped"].setdefault(reason, {"docs": 0, "bytes": 0})
        d["docs"] += 1
        d["bytes"] += nbytes

    def count(self, key: str, name: str, n: int = 1) -> None:
        bucket = self.extra.setdefault(key, {})
        bucket[name] = bucket.get(name, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {"sources": {k: self.sources[k] for k in sorted(self.sources)}, "extra": self.extra}


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums StageStats JSON from several tasks."""
    total = StageStats()
    for part in parts:
        for source, s in part["sources"].items():
            t = total.sources[source]
            for key in ("docs_in", "bytes_in", "docs_out", "bytes_out"):
                t[key] += s[key]
            for reason, d in s["dropped"].items():
                td = t["dropped"].setdefault(reason, {"docs": 0, "bytes": 0})
                td["docs"] += d["docs"]
                td["bytes"] += d["bytes"]
        _merge_extra(total.extra, part.get("extra", {}))
    return total.to_json()


def _merge_extra(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict):
            _merge_extra(into.setdefault(key, {}), value)
        elif isinstance(value, int | float):
            into[key] = into.get(key, 0) + value
        else:
            into[key] = value


def identity_errors(stage: str, stats: dict[str, Any]) -> list[str]:
    """Sources of `stage` whose documents do not add up (empty when the accounting is exact)."""
    errors = []
    for source, s in stats["sources"].items():
        dropped = sum(d["docs"] for d in s["dropped"].values())
        if s["docs_in"] != s["docs_out"] + dropped:
            errors.append(f"{stage}/{source}: {s['docs_in']} in != {s['docs_out']} out + {dropped} dropped")
    return errors


def bytes_edited(s: dict[str, Any]) -> int:
    """Bytes removed (or, if negative, added) by edits: the rest of the bytes identity."""
    return s["bytes_in"] - s["bytes_out"] - sum(d["bytes"] for d in s["dropped"].values())
