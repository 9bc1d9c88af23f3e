"""MinHash signatures and LSH banding over the C++ core (csrc/cpu/minhash*.cpp).

    hasher = MinHasher(num_perm=128, ngram=5, units="whitespace", seed=1)
    sig = hasher.signatures(texts)            # (len(texts), 128) uint32
    jaccard_estimate(sig[0], sig[1])          # fraction of equal entries ~ Jaccard of shingle sets
    bands, rows = optimal_bands(0.8, 128)     # LSH parameters for a Jaccard threshold

Shingles are n consecutive units: whitespace-separated words, alnum words (lowercased, punctuation
ignored) or characters, each hashed to an odd 32-bit number; permutation p maps a shingle hash s to
a_p * s mod 2^32 (a_p odd, drawn from the seed) and the signature keeps the minimum (the math is at
the top of csrc/cpu/minhash.h). Signatures are identical for every CPU path and thread count.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from fastllm import _ext

UNIT_MODES = {"whitespace": 0, "alnum": 1, "chars": 2}
# Changes whenever the signatures of the same (texts, num_perm, ngram, units, seed) change (2: odd
# 32-bit shingle hashes and multiplicative permutations); stored signatures of another version must
# not be mixed with new ones (their LSH band keys would never collide).
SIGNATURE_VERSION = 2


def default_threads() -> int:
    """Native threads for data work: FASTLLM_DATA_THREADS, else the CPUs this process may use."""
    forced = os.environ.get("FASTLLM_DATA_THREADS", "").strip()
    if forced:
        return max(1, int(forced))
    return max(1, len(os.sched_getaffinity(0)))


def unit_mode(units: str) -> int:
    if units not in UNIT_MODES:
        raise ValueError(f"units must be one of {', '.join(UNIT_MODES)}, got {units!r}")
    return UNIT_MODES[units]


def permutation_multipliers(num_perm: int, seed: int) -> np.ndarray:
    """The per-permutation odd 32-bit multipliers, padded with more to the kernel's lane multiple."""
    align = _ext.cpu().minhash.PERM_ALIGN
    padded = -(-num_perm // align) * align
    draws = np.random.Generator(np.random.PCG64(seed)).integers(0, 2**32, size=padded, dtype=np.uint32)
    return draws | np.uint32(1)


class MinHasher:
    def __init__(self, num_perm: int = 128, ngram: int = 5, units: str = "whitespace", seed: int = 1,
                 num_threads: int | None = None):
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.num_perm, self.ngram, self.units, self.seed = num_perm, ngram, units, seed
        self._mode = unit_mode(units)
        self._mults = permutation_multipliers(num_perm, seed)
        self.num_threads = num_threads or default_threads()

    def signatures(self, texts: Sequence[str | bytes]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures; a text without shingles gets all 0xFFFFFFFF."""
        texts = texts if isinstance(texts, list | tuple) else list(texts)
        padded = self._mults.shape[0]
        out = np.empty((len(texts), padded), dtype=np.uint32)
        if texts:
            _ext.cpu().minhash.signatures(texts, self._mults.ctypes.data, padded, self._mode, self.ngram,
                                          out.ctypes.data, self.num_threads)
        return out if padded == self.num_perm else np.ascontiguousarray(out[:, : self.num_perm])

    def shingles(self, text: str) -> set[int]:
        """The (odd) 32-bit shingle hashes of one text (for exact Jaccard in tests and checks)."""
        return set(_ext.cpu().minhash.shingle_hashes([text], self._mode, self.ngram))


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def _integrate(f, a: float, b: float, steps: int = 200) -> float:
    xs = np.linspace(a, b, steps + 1)
    ys = f(xs)
    return float(np.sum((ys[1:] + ys[:-1]) * 0.5) * (b - a) / steps)


@functools.cache
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted probability mass of
    false positives (pairs below `threshold` that collide in some band) and false negatives
    (pairs above it that collide in none), for Jaccard similarity uniform on [0, 1]."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _integrate(lambda s, b=bands, r=rows: 1 - (1 - s**r) ** b, 0.0, threshold)
            fn = _integrate(lambda s, b=bands, r=rows: (1 - s**r) ** b, threshold, 1.0)
            error = false_positive_weight * fp + (1 - false_positive_weight) * fn
            if error < best_error - 1e-12:
                best, best_error = (bands, rows), error
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int, num_threads: int | None = None) -> np.ndarray:
    """(n, bands) uint64: one hash per LSH band; equal keys mean equal rows in that band."""
    sig = np.ascontiguousarray(signatures, dtype=np.uint32)
    n, stride = sig.shape
    if bands * rows > stride:
        raise ValueError(f"bands x rows = {bands} x {rows} exceeds the signature length {stride}")
    keys = np.empty((n, bands), dtype=np.uint64)
    if n:
        _ext.cpu().minhash.band_keys(sig.ctypes.data, n, stride, bands, rows, keys.ctypes.data,
                                     num_threads or default_threads())
    return keys


def components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Union-find over edges (u[i], v[i]); root[i] is the smallest index in i's component."""
    u = np.ascontiguousarray(u, dtype=np.int64)
    v = np.ascontiguousarray(v, dtype=np.int64)
    if u.shape != v.shape:
        raise ValueError(f"edge arrays differ in length: {u.shape} vs {v.shape}")
    root = np.empty(n, dtype=np.int64)
    _ext.cpu().minhash.components(n, u.ctypes.data, v.ctypes.data, u.shape[0], root.ctypes.data)
    return root
