"""Writes tests/data/pii_labelled.jsonl: a synthetic, labelled PII test set (seeded, reproducible).

Each line: {"text": ..., "entities": [{"type", "start", "end"}]}. Positives of every type in
varied contexts and formats; hard negatives that look alike (Luhn-invalid card numbers, IBANs with
a wrong check, Aadhaar-shaped numbers failing Verhoeff, dates, versions, ISBNs, prices, times).
Run: .venv/bin/python tests/data/make_pii_set.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from fastllm.data.pii import _VERHOEFF_D, _VERHOEFF_P, IBAN_LENGTHS, luhn_valid

rng = random.Random(20240601)
FIRST = ["ana", "li", "omar", "sofia", "raj", "mei", "john", "fatima", "ivan", "zoe"]
DOMAINS = ["example.com", "mail.example.org", "uni-bonn.de", "corp.co.uk", "startup.io"]


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + digits(length - len(prefix) - 1)
    return next(body + d for d in string.digits if luhn_valid(body + d))


def verhoeff_complete(body: str) -> str:
    for d in string.digits:
        check, number = 0, body + d
        for i, ch in enumerate(reversed(number)):
            check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
        if check == 0:
            return number
    raise AssertionError


def iban(country: str) -> str:
    body = "".join(rng.choice(string.digits + string.ascii_uppercase[:6]) for _ in range(IBAN_LENGTHS[country] - 4))
    numeric = "".join(str(int(c, 36)) for c in body + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{body}"


def group(s: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(s[i:i + size] for i in range(0, len(s), size))


def email() -> str:
    return f"{rng.choice(FIRST)}{rng.choice(['.', '_', ''])}{rng.choice(FIRST)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"


def phone() -> str:
    return rng.choice([
        lambda: f"+1 {rng.randint(201, 989)} {rng.randint(200, 999)} {digits(4)}",
        lambda: f"+44 20 {digits(4)} {digits(4)}",
        lambda: f"+91 9{digits(4)} {digits(5)}",
        lambda: f"+49 176 {digits(8)}",
        lambda: f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{digits(4)}",
        lambda: f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{digits(4)}",
        lambda: f"020 {digits(4)} {digits(4)}",
        lambda: f"+33 1 {digits(2)} {digits(2)} {digits(2)} {digits(2)}",
    ])()


def card() -> str:
    number = rng.choice([lambda: luhn_complete("4", 16), lambda: luhn_complete("5" + str(rng.randint(1, 5)), 16),
                         lambda: luhn_complete(rng.choice(["34", "37"]), 15), lambda: luhn_complete("6011", 16)])()
    return rng.choice([number, group(number), group(number, sep="-")])


def ip() -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return rng.choice([f"2001:db8::{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}",
                       ":".join(f"{rng.randint(0, 0xffff):x}" for _ in range(8)), "fe80::1ff:fe23:4567:890a"])


def id_number() -> str:
    kind = rng.random()
    if kind < 0.4:
        return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if kind < 0.75:
        return group(verhoeff_complete(str(rng.randint(2, 9)) + digits(10)))
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
    return f"{letters}{rng.choice('PCHFAT')}{rng.choice(string.ascii_uppercase)}{digits(4)}{rng.choice(string.ascii_uppercase)}"


def secret() -> str:
    alnum = string.ascii_letters + string.digits
    rand = lambda n, chars=alnum: "".join(rng.choice(chars) for _ in range(n))
    return rng.choice([
        lambda: "AKIA" + rand(16, string.ascii_uppercase + string.digits),
        lambda: "ghp_" + rand(36),
        lambda: "xoxb-" + digits(11) + "-" + rand(24),
        lambda: "AIza" + rand(35),
        lambda: "sk_live_" + rand(24),
        lambda: "eyJhbGciOiJIUzI1NiJ9.eyJ" + rand(30) + "." + rand(43),
        lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + rand(64) + "\n" + rand(64) + "\n-----END RSA PRIVATE KEY-----",
    ])()


GENERATORS = {"EMAIL": email, "PHONE": phone, "CREDIT_CARD": card, "IBAN": lambda: group(iban(rng.choice(
    ["DE", "GB", "FR", "NL", "IT", "ES", "CH"]))), "IP": ip, "ID_NUMBER": id_number, "SECRET": secret}
TEMPLATES = ["Please contact {} for details.", "Record: {} (verified)", "my number is {}, call me.",
             "Sent from {} on Monday.", "value={}\nnext line", "Kindly note: {}; thanks, the team."]


def negatives() -> list[str]:
    bad_card = luhn_complete("4", 16)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + 1) % 10)
    good_iban = iban("DE")
    bad_iban = good_iban[:2] + f"{(int(good_iban[2:4]) + 1) % 100:02d}" + good_iban[4:]
    aadhaar = verhoeff_complete("2" + digits(10))
    bad_aadhaar = aadhaar[:-1] + str((int(aadhaar[-1]) + 1) % 10)
    return rng.choice([
        f"Order {bad_card} was shipped.", f"Account {group(bad_iban)} is closed.",
        f"Ref no. {group(bad_aadhaar)} issued.", f"Released version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        f"Meeting at {rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)} today.",
        f"ISBN 978-{rng.randint(0, 9)}-{digits(2)}-{digits(6)}-{rng.randint(0, 9)}", f"It cost ${rng.randint(10, 999)}.{digits(2)}",
        f"In {rng.randint(1500, 2024)} there were {rng.randint(1000, 99999)} people.",
        f"Call it {digits(3)} {digits(4)}, the lucky number.", "Email me at name at example dot com",
        f"SSN-like 000-{digits(2)}-{digits(4)} and 666-{digits(2)}-{digits(4)} are invalid.",
        f"Section {rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)} applies",
        "The key is ABCDEF and password is short", f"Score {digits(2)}-{digits(2)} in the final.",
    ])


def make() -> list[dict]:
    records = []
    for pii_type, generate in GENERATORS.items():
        for _ in range(60):
            value = generate()
            template = rng.choice(TEMPLATES)
            start = template.index("{}")
            records.append({"text": template.format(value),
                            "entities": [{"type": pii_type, "start": start, "end": start + len(value)}]})
    for _ in range(150):
        records.append({"text": negatives(), "entities": []})
    rng.shuffle(records)
    return records


if __name__ == "__main__":
    out = Path(__file__).with_name("pii_labelled.jsonl")
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make()), encoding="utf-8")
    print(f"wrote {out}")
