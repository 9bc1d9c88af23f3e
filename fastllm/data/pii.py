"""Personal data detection and redaction with typed placeholders.

    redacted, counts = redact("mail me at ana@example.org")   # ("mail me at <EMAIL>", {"EMAIL": 1})

Types: EMAIL, PHONE (international +CC and common national formats), IP (IPv4, IPv6),
CREDIT_CARD (13-19 digits, issuer prefix and Luhn checked), IBAN (country length and mod-97
checked), ID_NUMBER (US SSN with its validity rules, Indian Aadhaar with the Verhoeff checksum,
Indian PAN), SECRET (API-key shapes, private-key blocks, JWTs, key=value assignments of long
tokens). Checksums and validity rules keep false positives down; each detector only runs when a
cheap test says it could match: one C++ pass (csrc/cpu/text_pii.cpp) finds which anchors occur
(the secrets' literal prefixes, '@', an IPv6-like colon, ':' or '=') and the windows around digit
runs, the same ones `_digit_windows_ref` and the hint tests below give. When matches overlap, the
earlier type in PRIORITY wins.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from fastllm import _ext
from fastllm.data.script import LOWER_TO_ASCII

PII_TYPES = ("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "ID_NUMBER", "IP", "PHONE")


@dataclass
class PiiConfig:
    enabled: bool = field(default=True, metadata={"help": "redact personal data"})
    types: list[str] = field(default_factory=lambda: list(PII_TYPES),
                             metadata={"help": f"types to redact: {', '.join(PII_TYPES)}"})

    def validate(self) -> None:
        unknown = sorted(set(self.types) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"types: unknown PII types {unknown}; known: {', '.join(PII_TYPES)}")


@dataclass(frozen=True)
class Match:
    type: str
    kind: str  # the detector: email, ssn, aadhaar, jwt, ...
    start: int
    end: int


# ---- checksums -------------------------------------------------------------------------------

def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)  # any Unicode decimal digit: \d matches Devanagari and Arabic-Indic digits too
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff_valid(digits: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
    return check == 0


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22,
    "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29,
}


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _card_issuer_ok(digits: str) -> bool:
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)
    two, four = int(digits[:2]), int(digits[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if digits.startswith("6011") or two == 65 or 644 <= int(digits[:3]) <= 649:
        return n in (16, 19)
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    return two == 62 and 16 <= n <= 19


# ---- detectors -------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                    r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
_SECRETS = [  # (kind, substrings one of which must occur, pattern)
    ("private_key", ("PRIVATE KEY",), re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,}?"
                                                 r"-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("jwt", ("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")),
    ("aws_key", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA"),
     re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{40,255})\b")),
    ("slack_token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,72}\b")),
    ("google_api_key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    ("stripe_key", ("k_live_", "k_test_"), re.compile(r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,99}\b")),
    ("openai_key", ("sk-",), re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,200}(?![A-Za-z0-9_-])")),
]
_SECRET_WORDS = ("key", "secret", "token", "passw")
_ASSIGNED_SECRET = re.compile(r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|"
                              r"password|passwd)\b[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-/+=.]{16,200})")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# Grouped numbers (cards, SSNs, Aadhaar) must stand alone: a further digit group on either side
# ("3407 6081 2618 2208 6409") means a table or list of numbers, where a checksum alone would pass
# one random 12-digit run in ten.
_ALONE_BEFORE, _ALONE_AFTER = r"(?<![\d-])(?<!\d[ -])", r"(?![\d-])(?![ -]\d)"
_CARD = re.compile(_ALONE_BEFORE + r"\d(?:[ -]?\d){12,18}" + _ALONE_AFTER)
_SSN = re.compile(_ALONE_BEFORE + r"(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}" + _ALONE_AFTER)
_AADHAAR = re.compile(_ALONE_BEFORE + r"[2-9]\d{3}([ -]?)\d{4}\1\d{4}" + _ALONE_AFTER)
_PAN = re.compile(r"\b[A-Z]{3}[PCHFATBLJG][A-Z]\d{4}[A-Z]\b")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\d.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4})"
                   r"(?:%\w+)?(?![\w:])|(?<![\w:])::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![\w:])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,5}){1,5}(?![\w])")
_PHONE_NATIONAL = re.compile(
    r"(?<![\w+-])(?:\(\d{3}\) ?\d{3}[ .-]\d{4}"            # (555) 123-4567
    r"|[2-9]\d{2}([.-])\d{3}\1\d{4}"                       # 555-123-4567, 555.123.4567
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"                    # 020 7946 0958, 0176 1234 5678
    r"|0\d{3,4}[ /-]\d{6,8})"                              # 030/12345678, 0176-12345678
    r"(?![\w-])")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _find_secrets(text: str, hint_bits: int) -> Iterable[Match]:
    """hint_bits: from _scan (which hints and anchors occur in text)."""
    for k, (kind, _hints, pattern) in enumerate(_SECRETS) if hint_bits & _ANY_SECRET_HINT else ():
        if hint_bits >> k & 1:
            for m in pattern.finditer(text):
                yield Match("SECRET", kind, m.start(), m.end())
    # An assignment needs one of the words and, after it, ':' or '='.
    if hint_bits & _SECRET_WORD and hint_bits & _ASSIGN_CHAR:
        yield from _assigned_secrets(text)


def _assigned_secrets(text: str) -> Iterable[Match]:
    lowered = text.lower()
    if len(lowered) != len(text):  # 'İ' lowers to two characters: keep positions those of `text`
        lowered = "".join(c.lower()[0] for c in text)
    seen: set[int] = set()
    for word in _SECRET_WORDS:
        at = lowered.find(word)
        while at >= 0:
            # Only a keyword followed (within a few chars) by ':' or '=' can start an assignment.
            if any(c in text[at:at + 24] for c in ":="):
                a = max(0, at - 16)
                for m in _ASSIGNED_SECRET.finditer(text[a:at + 240]):
                    value = m.group(1)
                    if (a + m.start(1) not in seen and len(set(value)) >= 10 and any(c.isdigit() for c in value)
                            and any(c.isalpha() for c in value)):
                        seen.add(a + m.start(1))
                        yield Match("SECRET", "assigned_secret", a + m.start(1), a + m.end(1))
            at = lowered.find(word, at + 1)


def _find_emails(text: str) -> Iterable[Match]:
    for m in _EMAIL.finditer(text):
        yield Match("EMAIL", "email", m.start(), m.end())


def _find_ibans(text: str) -> Iterable[Match]:
    for m in _IBAN.finditer(text):
        compact = m.group(0).replace(" ", "")
        # The pattern may run into the next word; try the longest valid prefix on group boundaries.
        for length in range(min(len(compact), 34), 14, -1):
            if iban_valid(compact[:length]):
                end = m.start()
                seen = 0
                while seen < length:
                    seen += m.group(0)[end - m.start()] != " "
                    end += 1
                yield Match("IBAN", "iban", m.start(), end)
                break


def _card_groups_ok(number: str) -> bool:
    """Card numbers are printed whole or in groups of 4 to 6 digits (4-4-4-4, Amex 4-6-5, 4-4-4-4-3);
    shorter groups ("391 251 655 305 379") are a row of numbers."""
    groups = re.split(r"[ -]", number)
    return len(groups) == 1 or (len(groups[0]) == 4 and all(len(g) >= 4 for g in groups[:-1])
                                and len(groups[-1]) >= 3)


def _find_cards(text: str) -> Iterable[Match]:
    for m in _CARD.finditer(text):
        digits = _digits(m.group(0))
        if (13 <= len(digits) <= 19 and _card_issuer_ok(digits) and luhn_valid(digits)
                and _card_groups_ok(m.group(0))):
            yield Match("CREDIT_CARD", "card", m.start(), m.end())


def _three_years(digits: str) -> bool:
    """'2019 2020 2021' (a table header, a list of seasons) has the shape of a grouped Aadhaar."""
    return all(1800 <= int(digits[i:i + 4]) <= 2099 for i in (0, 4, 8))


def _find_ids(text: str) -> Iterable[Match]:
    for m in _SSN.finditer(text):
        yield Match("ID_NUMBER", "ssn", m.start(), m.end())
    for m in _AADHAAR.finditer(text):
        digits = _digits(m.group(0))
        if verhoeff_valid(digits) and not (m.group(1) and _three_years(digits)):
            yield Match("ID_NUMBER", "aadhaar", m.start(), m.end())
    for m in _PAN.finditer(text):
        yield Match("ID_NUMBER", "pan", m.start(), m.end())


def _find_ipv4(text: str) -> Iterable[Match]:
    if "." in text:
        for m in _IPV4.finditer(text):
            yield Match("IP", "ipv4", m.start(), m.end())


# Dotted numbers that name a part of a document or a release, not a host: "Section 1.2.3.4",
# "§ 4.1.2.3", "version 2.0.1.7", "v1.2.3.4".
_NUMBERING_WORD = re.compile(r"(?i)(?:(?<!\w)(?:sections?|sec|chapters?|clauses?|articles?|art|paragraphs?|para|"
                             r"rules?|figures?|fig|tables?|versions?|ver|release|steps?|items?|appendix|part)\.?"
                             r"\s*|§+\s*|(?<!\w)v)$")


def _is_numbering(text: str, match: Match) -> bool:
    return match.kind == "ipv4" and _NUMBERING_WORD.search(text, max(0, match.start - 16), match.start) is not None


_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]|::")


def _find_ipv6(text: str) -> Iterable[Match]:
    for m in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0).split("%")[0])
        except ValueError:
            continue
        yield Match("IP", "ipv6", m.start(), m.end())


def _find_phones(text: str) -> Iterable[Match]:
    if "+" in text:
        for m in _PHONE_INTL.finditer(text):
            if 8 <= len(_digits(m.group(0))) <= 15:
                yield Match("PHONE", "phone_intl", m.start(), m.end())
    for m in _PHONE_NATIONAL.finditer(text):
        if 7 <= len(_digits(m.group(0))) <= 12:
            yield Match("PHONE", "phone_national", m.start(), m.end())


# Detectors that need text around digits run only in windows around digit runs: most text has
# few, and Python's regex engine is slow when a pattern must be tried at every position.
_DIGIT_DETECTORS: list[tuple[str, Callable[[str], Iterable[Match]]]] = [
    ("IBAN", _find_ibans), ("CREDIT_CARD", _find_cards), ("ID_NUMBER", _find_ids), ("IP", _find_ipv4),
    ("PHONE", _find_phones)]
PRIORITY = {t: i for i, t in enumerate(("SECRET", "EMAIL", "IBAN", "CREDIT_CARD", "ID_NUMBER", "IP", "PHONE"))}
_DIGIT_RUN = re.compile(r"\d[\d \-./()]{2,}\d")
_WINDOW_MARGIN = 48


def _digit_windows_ref(text: str) -> list[tuple[int, int]]:
    """The reference for the scanner's windows: each digit run widened by the margin, merged."""
    windows: list[tuple[int, int]] = []
    for m in _DIGIT_RUN.finditer(text):
        a, b = max(0, m.start() - _WINDOW_MARGIN), min(len(text), m.end() + _WINDOW_MARGIN)
        if windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], b)
        else:
            windows.append((a, b))
    return windows


# Anchor bits of the scan besides one bit per _SECRETS entry (kSecretWord, ... in
# csrc/cpu/text_pii.h).
_SECRET_WORD, _HAS_AT, _IPV6_BIT, _ASSIGN_CHAR = 1 << 28, 1 << 29, 1 << 30, 1 << 31
_ANY_SECRET_HINT = (1 << len(_SECRETS)) - 1
_ANCHORS = _ANY_SECRET_HINT | _HAS_AT | _IPV6_BIT  # each lets a detector run
_ASSIGNMENT = _SECRET_WORD | _ASSIGN_CHAR  # both needed for an assigned secret


@functools.cache
def _scanner():
    text = _ext.cpu().text
    if (text.SECRET_WORD, text.HAS_AT, text.IPV6_HINT, text.ASSIGN_CHAR) != (_SECRET_WORD, _HAS_AT, _IPV6_BIT,
                                                                              _ASSIGN_CHAR):
        raise RuntimeError("fastllm._C.text anchor bits differ from fastllm.data.pii's; rebuild with `make build`")
    return text.PiiScanner([list(hints) for _, hints, _ in _SECRETS], list(_SECRET_WORDS), list(LOWER_TO_ASCII),
                           _WINDOW_MARGIN)


def _scan(text: str) -> tuple[int, list[tuple[int, int]]]:
    """(anchor bits, digit windows). Bit k: a hint of _SECRETS[k] occurs; _SECRET_WORD: one of
    _SECRET_WORDS occurs in text.lower() (or may: the text holds one of LOWER_TO_ASCII); _HAS_AT:
    '@'; _IPV6_BIT: _IPV6_HINT matches; _ASSIGN_CHAR: ':' or '='. The windows are
    _digit_windows_ref's."""
    bits, bounds = _scanner().scan(text)
    return bits, _pairs(bounds)


def _pairs(bounds: list[int]) -> list[tuple[int, int]]:
    """[begin, end, begin, end, ...] -> [(begin, end), ...]"""
    return list(zip(bounds[::2], bounds[1::2]))


def _anchor_bits_ref(text: str) -> int:
    """The reference for the scan's anchor bits, with Python's substring tests and _IPV6_HINT."""
    bits = sum(1 << k for k, (_, hints, _) in enumerate(_SECRETS) if any(h in text for h in hints))
    if any(chr(c) in text for c in LOWER_TO_ASCII) or any(w in text.lower() for w in _SECRET_WORDS):
        bits |= _SECRET_WORD
    if "@" in text:
        bits |= _HAS_AT
    if ":" in text and _IPV6_HINT.search(text):
        bits |= _IPV6_BIT
    if ":" in text or "=" in text:
        bits |= _ASSIGN_CHAR
    return bits


def detect(text: str, types: Iterable[str] = PII_TYPES) -> list[Match]:
    """Non-overlapping matches in text order; on overlap the higher-priority type wins."""
    bits, windows = _scan(text)
    if not windows and not bits & _ANCHORS and (bits & _ASSIGNMENT) != _ASSIGNMENT:
        return []  # most text: no detector can match, so none runs (scan_many decides the same in C++)
    return _detect(text, set(types), bits, windows)


def detect_ref(text: str, types: Iterable[str] = PII_TYPES) -> list[Match]:
    """detect() with the anchors and windows found by the Python references (the plain regex way)."""
    return _detect(text, set(types), _anchor_bits_ref(text), _digit_windows_ref(text))


def _detect(text: str, wanted: set[str], bits: int, windows: list[tuple[int, int]]) -> list[Match]:
    found: list[Match] = []
    if "SECRET" in wanted:
        found.extend(_find_secrets(text, bits))
    if "EMAIL" in wanted and bits & _HAS_AT:
        found.extend(_find_emails(text))
    if "IP" in wanted and bits & _IPV6_BIT:
        found.extend(_find_ipv6(text))
    digit_finders = [finder for pii_type, finder in _DIGIT_DETECTORS if pii_type in wanted]
    for a, b in windows if digit_finders else ():
        window = text[a:b]
        for finder in digit_finders:
            found.extend(Match(m.type, m.kind, m.start + a, m.end + a) for m in finder(window))
    found = [m for m in found if not _is_numbering(text, m)]
    if len(found) < 2:
        return found
    found.sort(key=lambda m: (PRIORITY[m.type], m.start, -(m.end - m.start)))
    chosen: list[Match] = []
    for m in found:
        if all(m.end <= c.start or m.start >= c.end for c in chosen):
            chosen.append(m)
    return sorted(chosen, key=lambda m: m.start)


def redact(text: str, types: Iterable[str] = PII_TYPES) -> tuple[str, dict[str, int]]:
    """(text with each match replaced by <TYPE>, {type: count})."""
    return _redacted(text, detect(text, types))


def redact_many(texts: Sequence[str], types: Iterable[str] = PII_TYPES) -> list[tuple[str, dict[str, int]]]:
    """redact() of each text, with one C++ scan of them all (most need no detector at all)."""
    wanted = set(types)
    out = []
    for text, scan in zip(texts, _scanner().scan_many(list(texts), _ANCHORS, _ASSIGNMENT)):
        if scan is None:
            out.append((text, {}))
        else:
            bits, bounds = scan
            out.append(_redacted(text, _detect(text, wanted, bits, _pairs(bounds))))
    return out


def redact_ref(text: str, types: Iterable[str] = PII_TYPES) -> tuple[str, dict[str, int]]:
    """redact() over detect_ref(): the reference the benchmark compares with."""
    return _redacted(text, detect_ref(text, types))


def _redacted(text: str, matches: list[Match]) -> tuple[str, dict[str, int]]:
    if not matches:
        return text, {}
    parts, counts, pos = [], {}, 0
    for m in matches:
        parts += [text[pos:m.start], f"<{m.type}>"]
        counts[m.type] = counts.get(m.type, 0) + 1
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), counts
