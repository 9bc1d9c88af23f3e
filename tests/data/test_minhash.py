"""MinHash signatures, LSH bands and union-find (fastllm.data.minhash over csrc/cpu/minhash*.cpp)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from fastllm import _ext
from fastllm.data.minhash import (
    UNIT_MODES,
    MinHasher,
    band_keys,
    components,
    jaccard_estimate,
    optimal_bands,
    permutation_multipliers,
)
from tests.data.corpus import shakespeare_docs, shakespeare_words

# ---- Python reference of the shingle hashes and the permutations (csrc/cpu/minhash_shingle.h) ----
M64 = (1 << 64) - 1
UNIT_SEED, UNIT_MUL = 0x243F6A8885A308D3, 0x9FB21C651E98DF25


def _mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _utf8_length(lead: int) -> int:
    for bits, shift, length in ((0x6, 5, 2), (0xE, 4, 3), (0x1E, 3, 4)):
        if lead >> shift == bits:
            return length
    return 1


def _units_ref(data: bytes, units: str) -> list[bytes]:
    if units == "whitespace":
        return data.split()  # ASCII whitespace: space and \t..\r, as the C++ code
    if units == "alnum":
        return [bytes(c | 0x20 if c < 0x80 else c for c in u) for u in re.findall(rb"[A-Za-z0-9\x80-\xff]+", data)]
    out, i = [], 0
    while i < len(data):
        end = min(i + _utf8_length(data[i]), len(data))
        out.append(data[i:end])
        i = end
    return out


def _unit_hash_ref(unit: bytes) -> int:
    chunks = max(2, -(-len(unit) // 8))
    h = UNIT_SEED ^ len(unit)
    for t in range(chunks):
        h = ((h ^ int.from_bytes(unit[8 * t:8 * t + 8], "little")) * UNIT_MUL) & M64
        if t + 1 < chunks:
            h = ((h << 31) | (h >> 33)) & M64
    return h


def _shingle_hashes_ref(text: str | bytes, units: str, ngram: int) -> list[int]:
    data = text.encode() if isinstance(text, str) else text
    w = [_unit_hash_ref(u) for u in _units_ref(data, units)]
    coef = [_mix64((0x9E3779B97F4A7C15 * (j + 1)) & M64) | 1 for j in range(ngram)]
    starts = range(len(w) - ngram + 1) if len(w) >= ngram else ([0] if w else [])
    width = min(ngram, len(w))
    return [(_mix64(sum(w[i + j] * coef[j] for j in range(width)) & M64) >> 32) | 1 for i in starts]


def _signature_ref(shingles, mults) -> list[int]:
    return [min((int(a) * s) & 0xFFFFFFFF for s in shingles) if shingles else 0xFFFFFFFF for a in mults]


def _shingle_list(text, units: str, ngram: int) -> list[int]:
    return _ext.cpu().minhash.shingle_hashes([text], UNIT_MODES[units], ngram)


def _shingle_set(words: list[str], n: int = 5) -> set[str]:
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def _edge_texts() -> list[str | bytes]:
    rng = random.Random(5)
    seps = [" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", " - ", ", ", "! "]
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_'.é日"
    words = ["".join(rng.choice(letters) for _ in range(rng.choice([1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 40])))
             for _ in range(2000)]
    long_text = "".join(w + rng.choice(seps) for w in words)  # ~30 KB: several 4 KB segments
    return [
        "", " ", "\n\t ", "a", "a b", "one two three four", "x" * 64, "y" * 16, "z" * 17, "q" * 4096 + " r",
        " " * 4095 + "w" * 10, "s" * 5000, "a\x00b c\x00 d e f g",  # NUL is a unit byte
        "Hello, World! ÄÖÜ straße 日本語 text\tend ÉCOLE école", long_text, long_text[:4097], long_text[:8191],
        b"caf\xc3\xa9 \xff\xfe stray \x80 bytes \xe6\x97", b"truncated lead \xe6",
    ]


@pytest.mark.parametrize("units", ["whitespace", "alnum", "chars"])
def test_shingle_hashes_match_python_reference(cpu_isa, units):
    for text in _edge_texts():
        if units == "chars" and len(text) > 9000:
            continue  # the pure-Python reference is slow on 30 KB of character shingles
        for ngram in (1, 3, 5, 13):
            assert _shingle_list(text, units, ngram) == _shingle_hashes_ref(text, units, ngram), (units, ngram, text[:40])


@pytest.mark.parametrize("num_perm", [1, 16, 37, 128, 200])
def test_signature_matches_python_reference(cpu_isa, num_perm):
    hasher = MinHasher(num_perm=num_perm, ngram=3, seed=7, num_threads=1)
    texts = ["the quick brown fox jumps over the lazy dog and the quick brown cat", "", "tiny", _edge_texts()[14]]
    sigs = hasher.signatures(texts)
    mults = permutation_multipliers(num_perm, 7)[:num_perm]
    assert (mults % 2 == 1).all()
    for text, sig in zip(texts, sigs, strict=True):
        shingles = hasher.shingles(text)
        assert all(s % 2 == 1 for s in shingles)
        assert sig.tolist() == _signature_ref(shingles, mults)


def test_signatures_identical_across_isas_and_threads():
    from fastllm.kernels import forced_cpu_isa, supported_cpu_isas

    docs = shakespeare_docs(300, words_per_doc=97) + ["", "one", "a b c d", "x" * 1025] + _edge_texts()
    results = []
    for isa in supported_cpu_isas():
        with forced_cpu_isa(isa):
            for threads in (1, 2, 3):
                for units in ("whitespace", "alnum", "chars"):
                    results.append((units, MinHasher(128, 5, units, num_threads=threads).signatures(docs)))
    for units in ("whitespace", "alnum", "chars"):
        sigs = [s for u, s in results if u == units]
        assert all(np.array_equal(sigs[0], s) for s in sigs[1:])


def test_empty_text_has_max_signature_and_short_text_one_shingle():
    hasher = MinHasher(64, 5)
    sig = hasher.signatures(["", "   \n ", "only three words"])
    assert (sig[0] == 0xFFFFFFFF).all() and (sig[1] == 0xFFFFFFFF).all()
    assert len(hasher.shingles("only three words")) == 1
    assert not (sig[2] == 0xFFFFFFFF).all()


def test_alnum_units_ignore_case_and_punctuation():
    hasher = MinHasher(128, 3, "alnum")
    a, b = hasher.signatures(["To be, or NOT to be: that is the question!", "to be or not to be that is the question"])
    assert np.array_equal(a, b)


def test_estimates_agree_with_exact_jaccard_and_datasketch():
    datasketch = pytest.importorskip("datasketch")
    words = shakespeare_words()
    rng = random.Random(0)
    hasher = MinHasher(128, 5)
    ours, theirs = [], []
    for _ in range(150):
        start = rng.randrange(0, len(words) - 400)
        a = words[start:start + 300]
        rate = rng.random() * 0.3
        b = [f"X{rng.randrange(10**6)}" if rng.random() < rate else w for w in a]
        sa, sb = _shingle_set(a), _shingle_set(b)
        exact = len(sa & sb) / len(sa | sb)
        sig = hasher.signatures([" ".join(a), " ".join(b)])
        ma, mb = datasketch.MinHash(num_perm=128), datasketch.MinHash(num_perm=128)
        ma.update_batch([s.encode() for s in sa])
        mb.update_batch([s.encode() for s in sb])
        ours.append(jaccard_estimate(sig[0], sig[1]) - exact)
        theirs.append(ma.jaccard(mb) - exact)
    ours, theirs = np.array(ours), np.array(theirs)
    # Unbiased, with the sampling error of 128 permutations (sd <= sqrt(0.25 / 128) = 0.044).
    assert abs(ours.mean()) < 0.012
    assert ours.std() < 0.05
    assert abs(ours.std() - theirs.std()) < 0.012
    assert np.abs(ours).max() < 5 * 0.0442


@pytest.mark.parametrize("words_per_doc,pairs", [(8, 1500), (40, 800), (400, 500), (4000, 150)])
def test_estimator_unbiased_with_independent_permutations(words_per_doc, pairs):
    # Pairs of real texts with a random fraction of their words replaced span Jaccard 0..1; the
    # exact Jaccard of the shingle-hash sets is the truth. Each permutation must match with
    # probability J (no bias, overall and per permutation), and the spread of the 128-permutation
    # estimate must be the binomial sqrt(J (1 - J) / 128): correlated permutations would inflate it
    # (mean pair correlation rho multiplies the variance by 1 + 127 rho).
    words = shakespeare_words()
    rng = random.Random(words_per_doc)
    hasher = MinHasher(128, 5, num_threads=2)
    docs, exact = [], []
    for _ in range(pairs):
        start = rng.randrange(0, len(words) - words_per_doc)
        a = words[start:start + words_per_doc]
        rate = rng.random() * 0.6
        b = [f"Z{rng.randrange(10**9)}" if rng.random() < rate else w for w in a]
        docs += [" ".join(a), " ".join(b)]
        sa, sb = hasher.shingles(docs[-2]), hasher.shingles(docs[-1])
        exact.append(len(sa & sb) / len(sa | sb))
    sig = hasher.signatures(docs)
    match = (sig[0::2] == sig[1::2]).astype(np.float64)  # (pairs, 128)
    exact = np.array(exact)
    err = match.mean(1) - exact
    binomial_var = exact * (1 - exact)
    se = np.sqrt(binomial_var.sum() / 128) / pairs  # standard error of err.mean()
    assert abs(err.mean()) < 4 * se + 1e-9
    spread = np.sqrt(np.mean(err**2) / np.mean(binomial_var / 128))
    assert 0.82 < spread < 1.18, spread
    per_perm = match.mean(0) - exact.mean()
    assert np.abs(per_perm).max() < 5 * np.sqrt(binomial_var.mean() / pairs)


@pytest.mark.parametrize("threshold,expected", [(0.5, (25, 5)), (0.7, (14, 9)), (0.8, (9, 13)), (0.9, (5, 25))])
def test_optimal_bands_match_datasketch(threshold, expected):
    # datasketch's MinHashLSH picks these for num_perm=128 (same objective, equal weights).
    assert optimal_bands(threshold, 128) == expected


def test_band_keys_equal_iff_band_rows_equal():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(4, 12), dtype=np.uint32)
    sig[1] = sig[0]
    sig[2, :4] = sig[0, :4]  # shares band 0 only
    keys = band_keys(sig, bands=3, rows=4)
    assert (keys[0] == keys[1]).all()
    assert keys[0, 0] == keys[2, 0] and keys[0, 1] != keys[2, 1] and keys[0, 2] != keys[2, 2]
    assert not (keys[3] == keys[0]).any()
    with pytest.raises(ValueError, match="exceeds"):
        band_keys(sig, bands=4, rows=4)


def test_components_roots_are_smallest_index_and_order_free():
    u = np.array([5, 3, 9, 1, 7])
    v = np.array([3, 1, 8, 5, 2])
    root = components(10, u, v)
    assert root.tolist() == [0, 1, 2, 1, 4, 1, 6, 2, 8, 8]
    perm = np.random.default_rng(1).permutation(5)
    assert np.array_equal(components(10, v[perm], u[perm]), root)
    with pytest.raises(ValueError, match="outside"):
        components(3, np.array([0]), np.array([3]))
