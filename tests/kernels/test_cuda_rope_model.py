"""A CPU model of csrc/cuda/rope.cu's work split: it replays the launcher's geometry and every
thread's index math on element offsets, then checks that each q/k element is read and written by
exactly one thread, that nothing outside q and k is written (the gaps of strided views), that
16-byte accesses are aligned, and that the rotation it computes is the reference's bit for bit.

The kernel's constants are read from the .cu file, so the model follows them if they change. The
GPU tests in test_rope_backends.py (-m cuda) run the real kernel on the same kinds of shapes.
"""

import math
import re
from pathlib import Path

import pytest
import torch

from fastllm.kernels import rope_tables
from fastllm.kernels.rope.ref import rope_ref

SOURCE = Path(__file__).resolve().parents[2] / "csrc" / "cuda" / "rope.cu"


def _constant(name: str) -> int:
    match = re.search(rf"constexpr int {name} = (\d+);", SOURCE.read_text())
    assert match, f"{name} not found in {SOURCE}"
    return int(match.group(1))


HEADS_PER_THREAD, THREADS, MAX_WIDTH = (_constant(n) for n in ("kHeadsPerThread", "kThreads", "kMaxWidth"))


def can_vectorize(vec, element_size, half, operands, tables):
    """rope.cu's can_vectorize: operands are (in, out) tensors, tables (cos, sin)."""
    if half % vec:
        return False
    for x, out in operands:
        for t in (x, out):
            if t.data_ptr() % (element_size * vec) or any(stride % vec for stride in t.stride()[:3]):
                return False
    return all(table.data_ptr() % (4 * vec) == 0 for table in tables)


SM_LIMITS = [(65536, 2048, 32), (65536, 1536, 16)]  # registers, threads, blocks: sm_80/90, sm_86/89


def rows_per_block(width, rows, regs, sm):
    """rope.cu's rows_per_block: token rows per block keeping the most threads resident per SM."""
    sm_regs, sm_threads, sm_blocks = sm
    regs_per_warp = (regs * 32 + 255) // 256 * 256
    best, best_resident = 1, -1
    y = 1
    while y * width <= MAX_WIDTH and y <= rows:
        warps = (y * width + 31) // 32
        blocks = min(sm_regs // (warps * regs_per_warp), sm_threads // (warps * 32), sm_blocks)
        if blocks * y * width > best_resident:
            best, best_resident = y, blocks * y * width
        y += 1
    return best


def geometry(vec, q_heads, k_heads, half, rows, regs=95, sm=SM_LIMITS[0]):
    """rope.cu's launch_vec: (pairs, q_groups, width, (block.x, block.y), blocks)."""
    pairs = half // vec
    q_groups = math.ceil(q_heads / HEADS_PER_THREAD)
    width = (q_groups + math.ceil(k_heads / HEADS_PER_THREAD)) * pairs
    block = (THREADS, 1)
    if width <= MAX_WIDTH:
        block = (width, rows_per_block(width, rows, regs, sm))
    return pairs, q_groups, width, block, math.ceil(rows / block[1])


def run_model(q, k, cos, sin, positions, offset, inverse, inplace, regs=95, sm=SM_LIMITS[0]):
    """What the kernel computes, element by element, plus how often each element was written."""
    batch, seq_len, q_heads, head_dim = q.shape
    k_heads, half = k.shape[2], head_dim // 2
    element_size = q.element_size()
    q_out = q if inplace else torch.full_like(q, float("nan"), memory_format=torch.contiguous_format)
    k_out = k if inplace else torch.full_like(k, float("nan"), memory_format=torch.contiguous_format)
    vec = 16 // element_size
    if not can_vectorize(vec, element_size, half, ((q, q_out), (k, k_out)), (cos, sin)):
        vec = 1
    rows = batch * seq_len
    pairs, q_groups, width, (block_x, block_y), blocks = geometry(vec, q_heads, k_heads, half, rows, regs, sm)
    assert block_x * block_y <= max(THREADS, MAX_WIDTH)  # the kernel's 128-register cap assumes <= 512
    assert block_x * block_y * regs <= sm[0]  # at least one block fits an SM

    # Every (row, w) a thread visits: row = blockIdx.x * blockDim.y + threadIdx.y, and
    # w = threadIdx.x + n * blockDim.x while w < width.
    row = (torch.arange(blocks)[:, None] * block_y + torch.arange(block_y)[None, :]).reshape(-1)
    row = row[row < rows]
    w = (torch.arange(block_x)[:, None] + block_x * torch.arange(math.ceil(width / block_x))[None, :]).reshape(-1)
    w = w[w < width]
    row, w = (x.reshape(-1) for x in torch.broadcast_tensors(row[:, None], w[None, :]))
    assert rows < 2**31 and row.max() < 2**31  # the kernel's int row and 32-bit division
    b, t = row // seq_len, row % seq_len
    position = positions[b, t] if positions is not None else offset + t
    group = w // pairs
    i = (w - group * pairs) * vec
    is_k = group >= q_groups
    h0 = torch.where(is_k, group - q_groups, group) * HEADS_PER_THREAD
    heads = torch.where(is_k, k_heads, q_heads)

    stores = {}
    for name, x, out, pick in (("q", q, q_out, ~is_k), ("k", k, k_out, is_k)):
        flat_in = x.as_strided((x.untyped_storage().nbytes() // element_size,), (1,), 0)
        flat_out = out.as_strided((out.untyped_storage().nbytes() // element_size,), (1,), 0)
        result, written = flat_out.clone(), torch.zeros(flat_out.shape, dtype=torch.int64)
        for j in range(HEADS_PER_THREAD):
            live = pick & (h0 + j < heads)
            bb, tt, hh, ii, pp = b[live], t[live], h0[live] + j, i[live], position[live]
            x_at = x.storage_offset() + bb * x.stride(0) + tt * x.stride(1) + hh * x.stride(2) + ii
            y_at = out.storage_offset() + bb * out.stride(0) + tt * out.stride(1) + hh * out.stride(2) + ii
            if vec > 1:  # one aligned 16-byte word per access
                for at in (x_at, x_at + half, y_at, y_at + half):
                    assert torch.all(at % vec == 0)
            v = torch.arange(vec)
            x1_at, y1_at = (x_at[:, None] + v).reshape(-1), (y_at[:, None] + v).reshape(-1)
            col = (ii[:, None] + v).reshape(-1)
            p = pp[:, None].expand(-1, vec).reshape(-1)
            c, s = cos[p, col], sin[p, col]
            if inverse:
                s = -s
            e1, e2 = flat_in[x1_at].float(), flat_in[x1_at + half].float()
            result[y1_at] = (e1 * c - e2 * s).to(q.dtype)
            result[y1_at + half] = (e2 * c + e1 * s).to(q.dtype)
            written.index_add_(0, y1_at, torch.ones_like(y1_at))
            written.index_add_(0, y1_at + half, torch.ones_like(y1_at))
        stores[name] = (out, result, written)
    return vec, stores


def _expected_writes(out):
    """1 at every element of `out`, 0 elsewhere in its storage."""
    mask = torch.zeros(out.untyped_storage().nbytes() // out.element_size(), dtype=torch.int64)
    index = torch.arange(mask.numel()).as_strided(out.shape, out.stride(), out.storage_offset())
    mask[index.reshape(-1)] = 1
    return mask


def _check(q, k, positions=None, offset=0, inverse=False, inplace=False, expect_vec=None, regs=95,
           sm=SM_LIMITS[0]):
    head_dim = q.shape[-1]
    max_pos = max(16, q.shape[1] + offset)
    cos, sin = rope_tables(max_pos, head_dim)
    if positions is not None:
        positions = positions % max_pos
    want = rope_ref(q, k, cos, sin, positions, offset, inverse)
    vec, stores = run_model(q, k, cos, sin, positions, offset, inverse, inplace, regs, sm)
    if expect_vec is not None:
        assert vec == expect_vec
    for (out, result, written), w in zip(stores.values(), want):
        torch.testing.assert_close(written, _expected_writes(out), rtol=0, atol=0)
        got = result.as_strided(out.shape, out.stride(), out.storage_offset())
        torch.testing.assert_close(got, w, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 1, 32, 8, 128), (4, 16, 32, 8, 128), (2, 3, 5, 3, 64), (1, 2, 1, 1, 2), (3, 2, 7, 1, 96),
                                   (1, 3, 130, 2, 128), (1, 1, 150, 149, 256), (2, 5, 4, 4, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_every_element_once_contiguous(seeded, shape, dtype):
    batch, seq, q_heads, k_heads, head_dim = shape
    q = torch.randn(batch, seq, q_heads, head_dim).to(dtype)
    k = torch.randn(batch, seq, k_heads, head_dim).to(dtype)
    half = head_dim // 2
    vec = 16 // q.element_size()
    _check(q, k, offset=3, expect_vec=vec if half % vec == 0 else 1)
    _check(q.clone(), k.clone(), positions=torch.randint(0, 1 << 20, (batch, seq)), inverse=True, inplace=True)


def test_geometry_covers_the_block_shapes():
    """The shapes above reach all three block shapes: several tokens per block, one token per
    block, a lane loop; and rows_per_block prefers the count that fills an SM with threads."""
    seen = set()
    for vec, q_heads, k_heads, half in ((8, 32, 8, 64), (8, 130, 2, 64), (8, 150, 149, 128), (4, 150, 149, 128)):
        _, _, width, (block_x, block_y), _ = geometry(vec, q_heads, k_heads, half, rows=64)
        seen.add("rows" if block_y > 1 else "wide" if width <= MAX_WIDTH else "loop")
    assert seen == {"rows", "wide", "loop"}
    # (B, T, 32, 8, 128) bf16 at 95 registers: 2 tokens (160 threads, 4 blocks per SM) beat 3
    # (240 threads cost 8 warps of registers: 2 blocks); a decode step's one token is one row.
    assert rows_per_block(80, 10**6, 95, SM_LIMITS[0]) == 2
    assert rows_per_block(80, 1, 95, SM_LIMITS[0]) == 1


@pytest.mark.parametrize("regs, sm", [(40, SM_LIMITS[0]), (128, SM_LIMITS[0]), (72, SM_LIMITS[1])])
def test_every_element_once_for_other_register_counts(seeded, regs, sm):
    """Whatever rows per block the launcher picks, the mapping covers each element once."""
    q, k = torch.randn(3, 7, 32, 64), torch.randn(3, 7, 8, 64)
    _check(q, k, offset=1, expect_vec=4, regs=regs, sm=sm)
    q, k = torch.randn(5, 9, 3, 16).half(), torch.randn(5, 9, 1, 16).half()
    _check(q, k, offset=1, expect_vec=8, regs=regs, sm=sm)


@pytest.mark.parametrize("inplace", [False, True])
def test_strided_views_with_gaps(seeded, inplace):
    qkv = torch.randn(2, 5, 3, 4, 32)  # a fused projection: q and k are views with gaps
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    _check(q, k, offset=2, inplace=inplace, expect_vec=4)


def test_heads_apart_like_a_bhtd_cache(seeded):
    cache = torch.randn(2, 6, 9, 64)  # (B, H, T, D) seen as (B, T, H, D): heads T * D apart
    _check(cache.transpose(1, 2), torch.randn(2, 9, 3, 64), offset=1, inplace=True, expect_vec=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_misaligned_views_fall_back_to_one_pair_per_lane(seeded, dtype):
    storage = torch.randn(1 + 2 * 3 * 5 * 64).to(dtype)
    q = storage[1:].view(2, 3, 5, 64)  # one element past an aligned start
    k = torch.randn(2, 3, 2, 64).to(dtype)
    _check(q, k, offset=4, expect_vec=1)
    _check(q, k, positions=torch.randint(0, 16, (3,)).expand(2, 3), inverse=True, inplace=True, expect_vec=1)


def test_odd_half_dims_fall_back(seeded):
    q, k = torch.randn(2, 3, 3, 34), torch.randn(2, 3, 1, 34)  # D/2 = 17: no 16-byte lanes
    _check(q, k, offset=1, expect_vec=1)


def test_no_k_heads_and_no_q_heads(seeded):
    _check(torch.randn(1, 2, 3, 16), torch.randn(1, 2, 0, 16), offset=1)
    _check(torch.randn(1, 2, 0, 16), torch.randn(1, 2, 5, 16), offset=1)
