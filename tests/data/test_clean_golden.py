"""Golden outputs of the clean stage's per-document work: normalization (every switch), the quality
statistics and drop reasons, and PII detection and redaction, on a varied corpus: the KJV,
Shakespeare (whole plays and their blocks), the labelled PII set, tricky Unicode (combining marks,
CJK, Devanagari, emoji, control characters, mojibake, NUL bytes, lone surrogates) and synthetic
web-like text full of numbers, addresses and keys.

The expected digests were computed by the straightforward regex implementations, before any fast
path existed (commit e6666c2), so every optimization must give byte-identical texts, statistics,
drop reasons, PII spans and counts. Regenerate only for an intended change of results (say so in
the commit): `.venv/bin/python tests/data/test_clean_golden.py` prints the table.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fastllm.data.normalize import NormalizeConfig, Normalizer
from fastllm.data.pii import PII_TYPES, detect, redact
from fastllm.data.quality import QualityConfig, QualityFilter, text_stats
from tests.data.corpus import kjv_paragraphs, play_files

# ---- the corpus -------------------------------------------------------------------------------

TRICKY = [
    # combining marks and NFC edge cases
    "Cafe\u0301", "e\u0301\u0302", "\u1e9b\u0323", "\u1100\u1161\u11a8", "\u212b", "\ufb01", "A\u030a\u0327",
    "\u0915\u093c", "\u00c5ngstr\u00f6m", "o\u0308\u0304", "\u0338=", "\u2126hm",
    # scripts
    "\u6f22\u5b57\u30c6\u30b9\u30c8\u3001\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002",
    "\u4e2d\u6587\u53e5\u5b50\uff0c\u5305\u542b\u6807\u70b9\u3002", "\ud55c\uad6d\uc5b4 \ubb38\uc7a5",
    "\u092d\u093e\u0930\u0924 \u090f\u0915 \u0935\u093f\u0936\u093e\u0932 \u0926\u0947\u0936 \u0939\u0948\u0964",
    "\u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f", "\u0967\u0968\u0969\u096a \u096b\u096c\u096d\u096e",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u0661\u0662\u0663\u0664",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
    "+\u0664\u0664 \u0662\u0660 \u0667\u0669\u0664\u0666 \u0660\u0669\u0665\u0668", "\U0001d7ce\U0001d7cf",
    # emoji
    "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1e9\U0001f1ea", "\u2764\ufe0f",
    "\U0001f600", "\u2026", "\u2022 bullet", "\u00b7 dot",
    # controls, breaks and spaces
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b[31m", "\x1c\x1d\x1e\x1f", "\x7f", "\x80", "\x85",
    "\x9f", "\u200b", "\u200c", "\u200e", "\u200f", "\u2060", "\ufeff", "\ufffe", "\uffff", "\r\n", "\r",
    "\r\r\n", "\n\r", "\u2028", "\u2029", "\t", " \t \n", "     ", "\n\n\n\n", "\n \n \n", "\u00a0", "\u3000",
    "\u2003", "\u202f", "\u205f", "\u1680", "\u180e", " \x00 ", "\t\x01\n", "\n\x0b\n\x0c\n",
    # mojibake
    "caf\u00c3\u00a9", "don\u00e2\u20ac\u2122t", "\u00c3\u00bcber na\u00c3\u00afve", "\u00e2\u20ac\u0153q\u00e2\u20ac\x9d",
    "\u00c3", "\u00c3\u00a9\u00c3\u00a9", "\u00e2\u20ac", "\u00c3 ", "\u00f0\u0178\u02dc\u20ac", "\u00c2\u00a0",
    # lone surrogates (normalization and PII only; the clean stage replaces them first)
    "\ud800", "\udfff", "\ud83d\ude00",
    # PII look-alikes around Unicode
    "\u212aey=abcdef1234567890XYZ", "\u0130token: ab12cd34ef56gh78ij90", "T\u00f6ken=abcdefghij1234567890",
    "\u00fcn\u00efcode@example.com", "mail\u00a0ana@example.org", "\u0966\u0967\u0968-\u0969\u096a-\u096b\u096c\u096d\u096e",
    "fe80::1%eth0", "::", "2001:db8::ff00:42:8329", "a:b:c:d:e:f:1:2", "10:30", "12:30:45",
    "\u2460\u2461\u2462\u2463\u2464", "\u00b2\u00b3\u00b9",
]
WORDS = ("the and of to in that with be have it is was for on as by at this from but not or word "
         "Lorem ipsum KEY Secret TOKEN password api_key access-token Passw0rd").split()


def _tricky_texts() -> list[str]:
    rng = random.Random(1)
    pool = TRICKY + WORDS
    texts = list(TRICKY)
    for _ in range(1500):
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 60))]
        seps = [rng.choice([" ", " ", " ", "", "\n", "  ", "\t", "\n\n", " \n"]) for _ in parts]
        texts.append("".join(p + s for p, s in zip(parts, seps)))
    return texts


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def _web_piece(rng: random.Random) -> str:
    digits = lambda n: "".join(rng.choice("0123456789") for _ in range(n))
    hexs = lambda n: "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(n))
    alnum = lambda n: "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                              for _ in range(n))
    sep = lambda: rng.choice([" ", "-", "", ".", " ", "/", "  "])
    card = rng.choice(["4", "51", "37", "6011", "3528", "36", "62", "2221"])
    card += digits(rng.choice([12, 13, 14, 15, 18]) - len(card))
    card += _luhn_digit(card) if rng.random() < 0.7 else digits(1)
    kind = rng.randrange(24)
    if kind == 0:
        return f"{rng.choice(['ana', 'li.wei', 'o+x', '_a', '.b'])}@{rng.choice(['example.com', 'x.co.uk', 'a', 'b-.io'])}"
    if kind == 1:
        return rng.choice(["+", "", "00"]) + sep().join(digits(rng.randint(1, 5)) for _ in range(rng.randint(1, 5)))
    if kind == 2:
        return ".".join(str(rng.randint(0, 300)) for _ in range(rng.choice([3, 4, 4, 5])))
    if kind == 3:
        return ":".join(hexs(rng.randint(0, 4)) for _ in range(rng.randint(2, 9))) + rng.choice(["", "%eth0", "::"])
    if kind == 4:
        return sep().join(card[i:i + 4] for i in range(0, len(card), 4)) if rng.random() < 0.5 else card
    if kind == 5:
        s = rng.choice("- ")
        return f"{digits(3)}{s}{digits(2)}{s}{digits(4)}"
    if kind == 6:
        s = rng.choice(["", " ", "-"])
        return f"{rng.randint(2, 9)}{digits(3)}{s}{digits(4)}{s}{digits(4)}"
    if kind == 7:
        return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(3)) + rng.choice("PCHFAT") + \
            rng.choice("ABCZ") + digits(4) + rng.choice("ABZ")
    if kind == 8:
        country = rng.choice(["GB", "DE", "FR", "NL", "XX", "NO"])
        body = digits(2) + alnum(rng.randint(11, 26)).upper()
        return country + (" ".join(body[i:i + 4] for i in range(0, len(body), 4)) if rng.random() < 0.5 else body)
    if kind == 9:
        key = rng.choice(["api_key", "secret", "password", "token", "Auth-Token", "passwd"])
        return key + rng.choice(["=", ": ", " = ", '": "']) + alnum(rng.randint(8, 40))
    if kind == 10:
        return rng.choice(["AKIA", "ASIA", "ghp_", "xoxb-", "AIza", "sk_live_", "sk-", "eyJ"]) + alnum(rng.randint(10, 45))
    if kind == 11:
        return f"eyJ{alnum(20)}.eyJ{alnum(30)}.{alnum(25)}"
    if kind == 12:
        return f"-----BEGIN {rng.choice(['', 'RSA ', 'EC '])}PRIVATE KEY-----\n{alnum(40)}\n{alnum(20)}\n" \
               f"-----END {rng.choice(['', 'RSA '])}PRIVATE KEY-----"
    if kind == 13:
        return f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.{rng.randint(1900, 2030)} {rng.randint(0, 23)}:{digits(2)}"
    if kind == 14:
        return f"({digits(3)}) {digits(3)}-{digits(4)}" if rng.random() < 0.5 else f"0{digits(3)} {digits(6)}"
    if kind == 15:
        return f"${rng.randint(1, 99999)}.{digits(2)} (was {rng.randint(1, 99)},{digits(3)})"
    if kind == 16:
        return ":".join(hexs(2) for _ in range(6))
    if kind == 17:
        return f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"
    if kind == 18:
        return sep().join(digits(rng.randint(1, 6)) for _ in range(rng.randint(2, 8)))
    if kind == 19:
        return rng.choice(["https://www.example.com/a?b=1&c=2", "http://10.0.0.1:8080/x", "user@host:22", "@handle"])
    if kind == 20:
        return rng.choice(["Genesis 1:1-3", "John 3:16", "(555) 123-4567", "555.123.4567", "030/12345678"])
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))


def _web_texts() -> list[str]:
    rng = random.Random(2)
    texts = []
    for _ in range(2500):
        parts = [_web_piece(rng) for _ in range(rng.randint(1, 25))]
        texts.append("".join(p + rng.choice([" ", " ", ", ", "\n", "; ", "", " (", ") "]) for p in parts))
    return texts


def _pii_texts() -> list[str]:
    path = Path(__file__).with_name("pii_labelled.jsonl")
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def _plays() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in play_files()]


def _play_blocks() -> list[str]:
    return [b for play in _plays() for b in re.split(r"\n[ \t]*\n", play)]


PARTS: dict[str, Callable[[], list[str]]] = {
    "kjv": kjv_paragraphs, "plays": _plays, "play_blocks": _play_blocks, "pii": _pii_texts,
    "tricky": _tricky_texts, "web": _web_texts}
SMALL_PARTS = ("pii", "tricky", "web")  # also checked with every normalization switch and PII type


@functools.cache
def corpus(part: str) -> tuple[str, ...]:
    return tuple(PARTS[part]())


# ---- what is checked --------------------------------------------------------------------------

def _digest(items) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item if isinstance(item, bytes) else json.dumps(item, ensure_ascii=True).encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()[:24]


def _normalized(part: str) -> list[str]:
    norm = Normalizer(NormalizeConfig())
    return [norm(t) for t in corpus(part)]


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _flag_configs() -> list[NormalizeConfig]:
    names = ("nfc", "remove_control", "whitespace", "collapse_spaces", "fix_mojibake")
    return [NormalizeConfig(**dict(zip(names, bits))) for bits in itertools.product([False, True], repeat=5)]


def check_normalize(part: str) -> str:
    texts = corpus(part)
    configs = [NormalizeConfig(), NormalizeConfig(fix_mojibake=True)]
    if part in SMALL_PARTS:
        configs += _flag_configs()
    return _digest(Normalizer(c)(t) for c in configs for t in texts)


def check_quality(part: str) -> str:
    inputs = [[_utf8_safe(t) for t in _normalized(part)], [_utf8_safe(t) for t in corpus(part)]]
    configs = [QualityConfig()]
    if part in SMALL_PARTS:
        configs += [QualityConfig(scripts=["Devanagari"], min_words=3),
                    QualityConfig(scripts=["Latin", "Han"], min_script_fraction=0.8, min_words=None)]
    out = []
    for texts in inputs:
        out.append(text_stats(texts, num_threads=1).tobytes())
        out += [QualityFilter(c, num_threads=1).reasons(texts) for c in configs]
    return _digest(out)


def _matches(text: str, types=PII_TYPES) -> list[tuple[str, str, int, int]]:
    return [(m.type, m.kind, m.start, m.end) for m in detect(text, types)]


def check_pii(part: str) -> str:
    out = []
    for texts in (_normalized(part), corpus(part)):
        for text in texts:
            out.append(redact(text))
            out.append(_matches(text))
            if part in SMALL_PARTS:
                out += [_matches(text, [t]) for t in PII_TYPES]
                out.append(redact(text, ["PHONE", "EMAIL", "IP"]))
    return _digest(out)


CHECKS = {"normalize": check_normalize, "quality": check_quality, "pii": check_pii}

EXPECTED = {
    "normalize/kjv": "90efd0ca1c39cca1f015982b",
    "quality/kjv": "185a93857f8fe45bde090d66",
    "pii/kjv": "423c268e428ee03956258f6d",
    "normalize/plays": "8a47eac5c51f297e30db6acf",
    "quality/plays": "c0fdb32d456b318e2ad92276",
    "pii/plays": "e345f0f95dc1f816d0213d6e",
    "normalize/play_blocks": "6202c4f27fbb2f5d7f98f5a9",
    "quality/play_blocks": "48d3cb45ef6032ed12366049",
    "pii/play_blocks": "b9d60192bd128eb3d1b3eafd",
    "normalize/pii": "01a783fc26a3df3a3fdcfe4b",
    "quality/pii": "b6fb68f6d677a17aff550df1",
    "pii/pii": "643ab7c663909ccdd01366d2",
    "normalize/tricky": "b7774ee34cf060b9c17a1bf4",
    "quality/tricky": "61585d3bdc19e20830620be7",
    "pii/tricky": "67c4752e4d53290f45d80675",
    "normalize/web": "52537a05453596068cf2727b",
    "quality/web": "218933081aec17c5f5df5002",
    "pii/web": "f33baa070a8881e37c0091cc",
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("part", list(PARTS))
def test_golden(check, part):
    assert CHECKS[check](part) == EXPECTED[f"{check}/{part}"], f"{check} changed its results on {part}"


if __name__ == "__main__":
    import time

    for part in PARTS:
        for name, fn in CHECKS.items():
            start = time.perf_counter()
            value = fn(part)
            print(f'    "{name}/{part}": "{value}",  # {time.perf_counter() - start:.2f} s')
