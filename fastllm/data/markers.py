"""Per-stage completion markers with config hashes, so reruns skip completed work, redo partial
work and redo whatever a changed config affects.

A stage directory holds its outputs, one `<part>.done.json` per finished task (written after the
task's outputs) and `_DONE.json` once every task finished. Markers carry the stage hash (the
stage's own settings plus the hash of the stage before it), so a changed setting invalidates that
stage and every stage after it, while unchanged finished parts are reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastllm import __version__
from fastllm.utils.atomic import write_json

DONE = "_DONE.json"


def config_hash(key: Any) -> str:
    payload = json.dumps({"fastllm": __version__, "key": key}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(path: str | Path) -> list[Any]:
    """What identifies an input file's version without reading it: path, size, mtime."""
    st = Path(path).stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class StageDir:
    def __init__(self, root: Path, name: str, key: Any):
        self.name = name
        self.dir = root / name
        self.hash = config_hash(key)

    def complete(self) -> dict[str, Any] | None:
        marker = _read(self.dir / DONE)
        return marker["result"] if marker and marker.get("hash") == self.hash else None

    def part_result(self, part: str) -> Any | None:
        marker = _read(self.dir / f"{part}.done.json")
        return marker["result"] if marker and marker.get("hash") == self.hash else None

    def mark_complete(self, result: Any) -> None:
        write_json(self.dir / DONE, {"stage": self.name, "hash": self.hash, "result": result})


def mark_part(stage_dir: str, stage_hash: str, part: str, result: Any) -> None:
    """From a worker: marks one finished part (outputs are already in place)."""
    write_json(Path(stage_dir) / f"{part}.done.json", {"hash": stage_hash, "result": result}, indent=None)
