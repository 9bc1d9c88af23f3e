"""The pre-tokenizer split patterns the C++ core implements, and how other tools name them.

`llama3` (the default) is LLaMA-3's pattern, identical to the original cl100k_base pattern: case-
insensitive contractions, letters with one optional leading non-letter, numbers in groups of at
most 3, punctuation runs with trailing newlines, and white space split before its last character.
`gpt2` is GPT-2's (HF ByteLevel with use_regex=True). `smollm` is SmolLM/SmolLM2's (HF
Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)], llama.cpp's "smollm"):
every number character alone, GPT-2's split on the text between them. Its regex here is the
same split in one pattern (for tiktoken and `regex.findall`); tokenizer.json keeps HF's form.

The C++ splitter reproduces `regex.findall(pattern, text)` exactly; these strings are written into
tokenizer.json (HF Split pre-tokenizer) and the tiktoken export, and recognised when loading.
"""

from __future__ import annotations

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Digits split first, so the GPT-2 rules never see a number: ` ?\p{N}+` is gone and a white-space
# run before a number is whole (`\s+(?=\p{N})`), as it is at the end of a text.
SMOLLM = r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+"

PATTERNS: dict[str, str] = {"llama3": LLAMA3, "gpt2": GPT2, "smollm": SMOLLM}
PATTERN_IDS: dict[str, int] = {"llama3": 0, "gpt2": 1, "smollm": 2}  # the C++ enum bpe::Pattern

# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) for the same splits.
GGUF_PRE: dict[str, str] = {"llama3": "llama-bpe", "gpt2": "gpt-2", "smollm": "smollm"}

# Other spellings of the same patterns found in the wild (tokenizer.json files). Newer tiktoken
# cl100k_base adds `\s++$`, which splits trailing white space differently: it is not accepted.
_EQUIVALENT: dict[str, str] = {
    LLAMA3: "llama3",
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama3",
    GPT2: "gpt2",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}]+| ?[\p{N}]+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+": "gpt2",
    SMOLLM: "smollm",
}


def pattern_name(regex: str) -> str | None:
    """'llama3', 'gpt2' or 'smollm' for a split regex equivalent to one of ours, else None."""
    return _EQUIVALENT.get(regex)


def check_pattern(name: str) -> str:
    if name not in PATTERNS:
        raise ValueError(f"unknown pre-tokenizer pattern {name!r}; choose one of {', '.join(PATTERNS)}")
    return name
