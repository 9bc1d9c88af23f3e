"""Reading the small JSON files models and tokenizers come with (config.json,
tokenizer_config.json): a file that is unreadable or holds something other than an object is a
one-line error naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastllm.utils.errors import FastLLMError, InputFormatError


def read_json_object(path: Path, error: type[FastLLMError] = InputFormatError, *, hint: str = "") -> dict[str, Any]:
    """The JSON object in `path`; `hint` (say "; fix or remove it") ends the message of a file
    that cannot be read or parsed."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON or unreadable ({exc}){hint}") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj
