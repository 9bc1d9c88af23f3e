"""Deduplication over the cleaned parts.

Map (one task per part): exact hash of each text (128-bit BLAKE2b), MinHash signature and LSH band
keys, saved as .npy. Reduce (global): documents get a global index in part order (sources in
config order, files sorted), so the result never depends on how many workers ran the map.
Exact duplicates keep their first occurrence; near duplicates are the connected components of the
LSH candidate graph (pairs sharing a band key, optionally verified against the threshold by their
signature agreement), and each component keeps its smallest index.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from fastllm.data.config import DedupConfig
from fastllm.data.markers import mark_part
from fastllm.data.minhash import MinHasher, band_keys, components, optimal_bands
from fastllm.data.stats import StageStats
from fastllm.utils.atomic import atomic_write


def lsh_params(config: DedupConfig) -> tuple[int, int]:
    if config.bands and config.rows:
        return config.bands, config.rows
    return optimal_bands(config.threshold, config.num_perm)


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def exact_hashes(texts: list[str]) -> np.ndarray:
    digest = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts)
    return np.frombuffer(digest, dtype=np.uint64).reshape(len(texts), 2).copy()


def minhash_task(task: dict[str, Any]) -> dict[str, Any]:
    """Executor entry point: hashes one cleaned part."""
    import pyarrow.parquet as pq

    config = DedupConfig(**task["dedup"])
    texts = pq.read_table(task["input"], columns=["text"]).column("text").to_pylist()
    hasher = MinHasher(config.num_perm, config.ngram, config.units, config.seed, num_threads=task["threads"])
    sig = hasher.signatures(texts)
    bands, rows = lsh_params(config)
    out = Path(task["stage_dir"])
    part = task["part"]
    _save(out / f"{part}.exact.npy", exact_hashes(texts))
    _save(out / f"{part}.sig.npy", sig)
    _save(out / f"{part}.bands.npy", band_keys(sig, bands, rows, task["threads"]))
    _save(out / f"{part}.valid.npy", ~(sig == 0xFFFFFFFF).all(axis=1))
    _save(out / f"{part}.bytes.npy", np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64))
    result = {"part": part, "docs": len(texts)}
    mark_part(task["stage_dir"], task["hash"], part, result)
    return result


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Mask of rows whose (h0, h1) did not occur at a smaller index."""
    n = hashes.shape[0]
    order = np.lexsort((np.arange(n), hashes[:, 1], hashes[:, 0]))
    sorted_h = hashes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (sorted_h[1:] != sorted_h[:-1]).any(axis=1)
    keep = np.zeros(n, dtype=bool)
    keep[order[new_group]] = True
    return keep


def _candidate_edges(keys: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first member of a bucket, other member) over every band, among `alive` rows."""
    ids = np.flatnonzero(alive)
    us, vs = [], []
    for b in range(keys.shape[1]):
        col = keys[ids, b]
        order = np.argsort(col, kind="stable")
        sorted_keys, sorted_ids = col[order], ids[order]
        same = np.zeros(len(ids), dtype=bool)
        same[1:] = sorted_keys[1:] == sorted_keys[:-1]
        starts = np.flatnonzero(~same)
        first = sorted_ids[starts][np.cumsum(~same) - 1]
        us.append(first[same])
        vs.append(sorted_ids[same])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u, v = np.concatenate(us), np.concatenate(vs)
    pairs = np.unique(np.stack([u, v], axis=1), axis=0) if len(u) else np.zeros((0, 2), np.int64)
    return pairs[:, 0], pairs[:, 1]


class _SignatureStore:
    """Random access to rows of the per-part signature files by global index (memory-mapped)."""

    def __init__(self, files: list[Path], offsets: np.ndarray):
        self.maps = [_load(f, mmap=True) for f in files]
        self.offsets = offsets

    def rows(self, index: np.ndarray) -> np.ndarray:
        part = np.searchsorted(self.offsets, index, side="right") - 1
        out = np.empty((len(index), self.maps[0].shape[1] if self.maps else 0), dtype=np.uint32)
        for p in np.unique(part):
            sel = part == p
            out[sel] = self.maps[p][index[sel] - self.offsets[p]]
        return out


def dedup_reduce(parts: list[dict[str, Any]], minhash_dir: Path, out_dir: Path,
                 config: DedupConfig) -> dict[str, Any]:
    """Writes <part>.keep.npy for every part and returns the dedup stage stats."""
    counts = np.array([p["docs"] for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = int(offsets[-1])
    names = [p["part"] for p in parts]
    keep = np.ones(n, dtype=bool)
    reason = np.zeros(n, dtype=np.int8)  # 1 exact, 2 near
    if config.exact and n:
        first = _first_occurrences(np.concatenate([_load(minhash_dir / f"{p}.exact.npy") for p in names]))
        reason[~first] = 1
        keep &= first
    clusters = {"candidate_pairs": 0, "verified_pairs": 0, "clusters": 0, "largest_cluster": 1}
    if config.near and n:
        valid = np.concatenate([_load(minhash_dir / f"{p}.valid.npy") for p in names])
        keys = np.concatenate([_load(minhash_dir / f"{p}.bands.npy") for p in names])
        u, v = _candidate_edges(keys, keep & valid)
        clusters["candidate_pairs"] = int(len(u))
        if config.verify and len(u):
            store = _SignatureStore([minhash_dir / f"{p}.sig.npy" for p in names], offsets)
            ok = np.concatenate([(store.rows(u[i:i + 65536]) == store.rows(v[i:i + 65536])).mean(axis=1)
                                 >= config.threshold for i in range(0, len(u), 65536)])
            u, v = u[ok], v[ok]
        clusters["verified_pairs"] = int(len(u))
        root = components(n, u, v)
        near = keep & (root != np.arange(n))
        reason[near] = 2
        keep &= ~near
        sizes = np.bincount(root[np.unique(np.concatenate([u, v]))]) if len(u) else np.zeros(0, np.int64)
        multi = sizes[sizes > 1]
        clusters["clusters"] = int(len(multi))
        clusters["largest_cluster"] = int(multi.max()) if len(multi) else 1
    stats = StageStats()
    for i, p in enumerate(parts):
        sl = slice(offsets[i], offsets[i + 1])
        _save(out_dir / f"{p['part']}.keep.npy", keep[sl])
        nbytes = _load(minhash_dir / f"{p['part']}.bytes.npy")
        s = stats.sources[p["source"]]
        s["docs_in"] += int(counts[i])
        s["bytes_in"] += int(nbytes.sum())
        s["docs_out"] += int(keep[sl].sum())
        s["bytes_out"] += int(nbytes[keep[sl]].sum())
        for code, name in ((1, "exact_duplicate"), (2, "near_duplicate")):
            hit = reason[sl] == code
            if hit.any():
                d = s["dropped"].setdefault(name, {"docs": 0, "bytes": 0})
                d["docs"] += int(hit.sum())
                d["bytes"] += int(nbytes[hit].sum())
    stats.extra["near_duplicate_clusters"] = clusters
    stats.extra["lsh"] = dict(zip(("bands", "rows"), lsh_params(config)))
    return stats.to_json()
