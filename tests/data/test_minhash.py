"""MinHash signatures, LSH bands and union-find (fastllm.data.minhash over csrc/cpu/minhash*.cpp)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fastllm.data.minhash import (
    MinHasher,
    band_keys,
    components,
    jaccard_estimate,
    optimal_bands,
    permutation_seeds,
)
from tests.data.corpus import shakespeare_docs, shakespeare_words


def _permute_ref(h: int, seed: int) -> int:
    x = (h ^ seed) & 0xFFFFFFFF
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def _shingle_set(words: list[str], n: int = 5) -> set[str]:
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.parametrize("num_perm", [1, 16, 37, 128, 200])
def test_signature_matches_python_reference(cpu_isa, num_perm):
    hasher = MinHasher(num_perm=num_perm, ngram=3, seed=7, num_threads=1)
    text = "the quick brown fox jumps over the lazy dog and the quick brown cat"
    sig = hasher.signatures([text])[0]
    seeds = permutation_seeds(num_perm, 7)[:num_perm]
    shingles = hasher.shingles(text)
    expected = [min(_permute_ref(h, int(s)) for h in shingles) for s in seeds]
    assert sig.tolist() == expected


def test_signatures_identical_across_isas_and_threads():
    from fastllm.kernels import forced_cpu_isa, supported_cpu_isas

    docs = shakespeare_docs(300, words_per_doc=97) + ["", "one", "a b c d", "x" * 1025]
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
