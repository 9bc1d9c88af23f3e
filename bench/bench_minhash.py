"""MinHash signatures from raw text (shingling included): fastllm vs datasketch (and rensa when
installed), on 10k real ~2 KB documents (Shakespeare), 128 permutations, 5-word shingles.

Prints docs/s, ratio = peer time / our time, and the agreement of Jaccard estimates with
datasketch's on near-duplicate pairs (both estimate the same shingle-set Jaccard).
Run: .venv/bin/python bench/bench_minhash.py [--docs 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from _common import cpu_name
from _common import median_seconds as timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastllm.data.minhash import MinHasher, jaccard_estimate  # noqa: E402
from tests.data.corpus import shakespeare_docs  # noqa: E402


def shingles(text: str, n: int = 5) -> list[bytes]:
    words = text.split()
    return [" ".join(words[i:i + n]).encode() for i in range(max(1, len(words) - n + 1))]


def datasketch_signatures(docs, num_perm):
    from datasketch import MinHash

    out = []
    for d in docs:
        m = MinHash(num_perm=num_perm)
        m.update_batch(shingles(d))
        out.append(m)
    return out


def rensa_signatures(docs, num_perm):
    from rensa import RMinHash

    out = []
    for d in docs:
        m = RMinHash(num_perm=num_perm, seed=42)
        m.update([s.decode() for s in shingles(d)])
        out.append(m)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-docs", type=int, default=2_000, help="docs for the (slow) Python peers")
    args = parser.parse_args()
    docs = shakespeare_docs(args.docs)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    hasher = MinHasher(128, 5, "whitespace", num_threads=args.threads)
    hasher.signatures(docs[:100])
    ours = timed(lambda: hasher.signatures(docs), 5)
    ours_rate = len(docs) / ours
    print(f"machine: {cpu_name()}, threads={args.threads}; {len(docs)} docs, {mb / len(docs) * 1000:.2f} KB avg")
    print(f"fastllm     {ours_rate:12,.0f} docs/s  {mb / ours:7.1f} MB/s  (raw text -> signature)")
    one_rate = ours_rate  # one thread, to compare with the single-threaded peers
    if args.threads != 1:
        single = MinHasher(128, 5, "whitespace", num_threads=1)
        one_rate = len(docs) / timed(lambda: single.signatures(docs), 5)
        print(f"fastllm 1t  {one_rate:12,.0f} docs/s  {mb * one_rate / len(docs):7.1f} MB/s  (one thread)")
    peer_docs = docs[:args.peer_docs]
    ds = timed(lambda: datasketch_signatures(peer_docs, 128), 1)
    ds_rate = len(peer_docs) / ds
    print(f"datasketch  {ds_rate:12,.0f} docs/s  ratio = {ours_rate / ds_rate:.1f}x  (Python shingling included)")
    try:
        rs = timed(lambda: rensa_signatures(peer_docs, 128), 3)
        rs_rate = len(peer_docs) / rs
        print(f"rensa       {rs_rate:12,.0f} docs/s  ratio = {ours_rate / rs_rate:.1f}x  (Python shingling included)")
        pre = [[s.decode() for s in shingles(d)] for d in peer_docs]
        from rensa import RMinHash

        def rensa_only():
            for sh in pre:
                RMinHash(num_perm=128, seed=42).update(sh)

        rs_sig = len(peer_docs) / timed(rensa_only, 3)
        print(f"rensa (signature only, pre-shingled) {rs_sig:,.0f} docs/s; ours incl. shingling is "
              f"{ours_rate / rs_sig:.1f}x ({one_rate / rs_sig:.1f}x on one thread)")
    except ImportError:
        print("rensa: not installed (pip install rensa)")
    # Jaccard agreement on near-duplicate pairs.
    rng = random.Random(0)
    diffs = []
    for d in docs[:300]:
        words = d.split()
        b = " ".join(w if rng.random() > 0.15 else "zz" + w for w in words)
        sig = hasher.signatures([d, b])
        ma, mb_ = datasketch_signatures([d, b], 128)
        diffs.append(jaccard_estimate(sig[0], sig[1]) - ma.jaccard(mb_))
    diffs = np.array(diffs)
    print(f"Jaccard estimate ours - datasketch over 300 pairs: mean {diffs.mean():+.4f}, sd {diffs.std():.4f} "
          f"(sampling sd of a difference of two 128-perm estimates is at most {np.sqrt(2 * 0.25 / 128):.3f})")


if __name__ == "__main__":
    main()
