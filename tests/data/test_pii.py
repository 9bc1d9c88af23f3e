"""PII redaction: typed placeholders, checksums, and precision/recall per type on the labelled
synthetic set tests/data/pii_labelled.jsonl (regenerate with tests/data/make_pii_set.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fastllm.data.pii import PII_TYPES, detect, iban_valid, luhn_valid, redact, verhoeff_valid

LABELLED = Path(__file__).with_name("pii_labelled.jsonl")


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB83WEST12345698765432")
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")


def test_redact_replaces_with_typed_placeholders():
    text = ("Write to ana.lima@example.org or +44 20 7946 0958. Card 4111 1111 1111 1111, "
            "IBAN GB82 WEST 1234 5698 7654 32, host 10.0.0.1, key AKIAIOSFODNN7EXAMPLE.")
    redacted, counts = redact(text)
    assert redacted == ("Write to <EMAIL> or <PHONE>. Card <CREDIT_CARD>, IBAN <IBAN>, host <IP>, key <SECRET>.")
    assert counts == {"EMAIL": 1, "PHONE": 1, "CREDIT_CARD": 1, "IBAN": 1, "IP": 1, "SECRET": 1}
    assert redact("nothing personal here")[1] == {}
    only_email, counts = redact(text, types=["EMAIL"])
    assert counts == {"EMAIL": 1} and "4111 1111" in only_email


def test_section_and_version_numbers_are_not_addresses():
    text = ("See Section 1.2.3.4, § 4.1.2.3 and Fig. 2.1.0.3 of release 10.0.0.1; v1.2.3.4 installed. "
            "The host at 10.0.0.1 answered, server 192.168.1.20 too (versions: 1.2.3.4).")
    redacted, counts = redact(text)
    assert redacted == ("See Section 1.2.3.4, § 4.1.2.3 and Fig. 2.1.0.3 of release 10.0.0.1; v1.2.3.4 installed. "
                        "The host at <IP> answered, server <IP> too (versions: <IP>).")
    assert counts == {"IP": 3}


def test_private_key_block_and_jwt():
    block = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
    assert redact(f"key:\n{block}\nend") == ("key:\n<SECRET>\nend", {"SECRET": 1})


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_precision_recall_per_type_on_labelled_set():
    records = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    tp, fp, fn = Counter(), Counter(), Counter()
    for record in records:
        gold = [(e["start"], e["end"], e["type"]) for e in record["entities"]]
        found = [(m.start, m.end, m.type) for m in detect(record["text"])]
        for span in found:
            if any(g[2] == span[2] and _overlaps(g, span) for g in gold):
                tp[span[2]] += 1
            else:
                fp[span[2]] += 1
        for g in gold:
            if not any(f[2] == g[2] and _overlaps(g, f) for f in found):
                fn[g[2]] += 1
    report = {}
    for t in PII_TYPES:
        precision = tp[t] / max(1, tp[t] + fp[t])
        recall = tp[t] / max(1, tp[t] + fn[t])
        report[t] = (round(precision, 3), round(recall, 3))
    print("precision/recall per type:", report)
    for t, (precision, recall) in report.items():
        assert precision >= 0.95, (t, report)
        assert recall >= 0.95, (t, report)


@pytest.mark.parametrize("text", ["Released version 2.10.3 in 1999.", "ISBN 978-3-16-148410-0",
                                  "Meeting at 12:30:45.", "Order 4111111111111112 shipped", "Pi is 3.14159265358979"])
def test_lookalikes_are_left_alone(text):
    assert redact(text) == (text, {})


def test_ordinary_numbers_in_prose_and_tables_are_left_alone():
    import random

    rng = random.Random(0)
    prose = ["For God so loved the world (John 3:16); see Genesis 1:1-3, Psalm 23:1-6 and Romans 3:23 6:23.",
             "The meeting is on 2023-10-05 at 14:30, or 05/10/2023; it costs $1,299.99 (was EUR 1.499,00).",
             "Population 8 336 817 in 2020; the wars of 1914-1918 and 1939-1945; scores 2:1, 3:0 and 102-98.",
             "Revenue 2019 2020 2021 rose; seasons 1998 1999 2000 were dry."]
    # Rows of 4-digit numbers: any three or four consecutive groups have the shape of an Aadhaar
    # or a card number, and one in ten such runs passes the checksum.
    rows = [" ".join(str(rng.randint(1000, 9999)) for _ in range(6)) for _ in range(300)]
    rows += [" ".join(str(rng.randint(100, 999)) for _ in range(5)) for _ in range(300)]  # 15 digits
    years = [" ".join(str(y + k) for k in range(3)) for y in range(1800, 2097)]
    for text in prose + rows + years:
        assert redact(text) == (text, {}), text
    # a grouped number on its own is still found
    assert redact("Aadhaar 2345 6789 0124, card 4111 1111 1111 1111.")[1] == {"ID_NUMBER": 1, "CREDIT_CARD": 1}
    assert redact("Amex 3782 822463 10005 or 3782-8224-6310-005")[1] == {"CREDIT_CARD": 2}


def test_numbers_written_in_other_scripts_are_checked_not_crashed_on():
    # \d matches every Unicode decimal digit, so a checksum sees Devanagari digits and must read them
    # by value (this once raised IndexError and lost the whole document batch)
    devanagari = str.maketrans("0123456789", "०१२३४५६७८९")
    assert verhoeff_valid("234567890124".translate(devanagari)) and verhoeff_valid("234567890124")
    assert luhn_valid("4111111111111111".translate(devanagari))
    assert redact("आधार 2३४५ ६७८९ ०१२४ है")[1] == {"ID_NUMBER": 1}
    assert redact("आधार 2३४५ ६७८९ ०१२५ है")[1] == {}  # fails the Verhoeff check


def test_secret_keyword_found_after_characters_whose_lowercase_is_longer():
    # 'İ'.lower() is two characters; keyword positions must stay those of the original text
    text = "İ" * 40 + " password: Xy7kLm9Qr2Tz8Wv4"
    assert redact(text) == ("İ" * 40 + " password: <SECRET>", {"SECRET": 1})
