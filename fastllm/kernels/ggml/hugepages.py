"""Weight buffers on transparent huge pages.

A batch-1 GEMV streams every weight byte from DRAM once. With 4 KiB pages the stream crosses a
page every 4 KiB: the hardware prefetchers stop at each boundary and the TLB misses constantly.
On 2 MiB pages the same kernel reads markedly faster (bench/bench_ggml_matmul.py), so repacked
weights are allocated from an anonymous mapping advised MADV_HUGEPAGE (Linux THP in "madvise"
or "always" mode). Anywhere that is not available this is a plain torch.empty.
"""

from __future__ import annotations

import math
import mmap

import numpy as np
import torch

HUGE_PAGE = 2 << 20


def empty_bytes(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 CPU tensor of `shape`, on huge pages when it spans at least one."""
    nbytes = math.prod(shape)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < HUGE_PAGE or advice is None:
        return torch.empty(shape, dtype=torch.uint8)
    try:
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError:
        return torch.empty(shape, dtype=torch.uint8)
    whole = np.frombuffer(region, dtype=np.uint8)
    offset = -whole.ctypes.data % HUGE_PAGE  # start on a huge-page boundary
    try:
        region.madvise(advice, offset, nbytes)
    except OSError:  # THP disabled: the mapping still works, on small pages
        pass
    # The tensor keeps the array alive, the array the mapping: freed together.
    return torch.from_numpy(whole[offset:offset + nbytes]).view(shape)


def copy_to_huge_pages(t: torch.Tensor) -> torch.Tensor:
    """A copy of a uint8 CPU tensor in a huge-page buffer (the tensor itself when not on CPU)."""
    if t.device.type != "cpu":
        return t.clone()
    out = empty_bytes(tuple(t.shape))
    out.copy_(t)
    return out
