"""CPU models of the index math in csrc/cuda/attention_wgmma.cu (the sm_90a wgmma forward).

No GPU runs the kernel in CI, so its shared-memory layout, matrix descriptors, register
fragments and step order are replayed here against wgmma_spec.py, a model of wgmma written from
the PTX ISA independently of the kernel:

- Tile copies: every thread's 16-byte chunks cover each tile exactly once, at the 128-byte-
  swizzled address of their (row, column), and one offset per thread serves all its rows.
- Descriptors: the kernel's encoding (wgmma.cuh smem_descriptor) and its start / LBO / SBO for
  every k16 step, handed to the spec's operand reader over a shared-memory image filled the way
  the kernel fills it, yield exactly Q's rows of each warpgroup, K's 128 keys and V's 16 keys x D.
- Fragments: the rows / columns the kernel assumes for each accumulator register (masks, row
  statistics, stores) and for P's A registers are the spec's.
- Step order: scores of block j, then P V of block j - 1, then the rescale by block j's alpha,
  replayed in float64, equals the reference.
A change to an expression in the .cu / .cuh files needs the matching change here.
"""

import importlib.util
import math
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import wgmma_spec as spec
from test_cuda_attention_model import reference64

from fastllm.kernels.attention.ref import expand_kv

CUDA_DIR = Path(__file__).resolve().parents[2] / "csrc" / "cuda"
SOURCE = (CUDA_DIR / "attention_wgmma.cu").read_text()


def _constant(pattern: str) -> int:
    match = re.search(pattern, SOURCE)
    assert match, f"{pattern!r} not found in attention_wgmma.cu"
    return int(match.group(1))


GROUP_ROWS = _constant(r"constexpr int kGroupRows = (\d+);")


class Tiles(NamedTuple):
    """attention_wgmma.cu Tiles<kGroups, kKeys, kStages>: query rows, keys a step, threads, K / V buffers."""
    rows: int
    keys: int
    threads: int
    stages: int


def _tilings() -> list[Tiles]:
    found = re.findall(r"using \w+Tiles = Tiles<(\d+), (\d+), (\d+)>;", SOURCE)
    assert len(found) == 2, found
    return [Tiles(int(groups) * GROUP_ROWS, int(keys), int(groups) * 128, int(stages))
            for groups, keys, stages in found]


TILINGS = _tilings()


# ---- the kernel's expressions, mirrored (file and function named at each) ---------------------

def swizzled_offset(rows: int, row: int, col: int) -> int:
    """wgmma.cuh swizzled_offset."""
    return (col // 64) * rows * 128 + row * 128 + ((((col % 64) // 8) ^ (row % 8)) * 16) + (col % 8) * 2


def smem_descriptor(address: int, leading_bytes: int, stride_bytes: int) -> int:
    """wgmma.cuh smem_descriptor (layout 1 = 128-byte swizzle)."""
    return ((address & 0x3FFFF) >> 4) | ((leading_bytes >> 4) << 16) | ((stride_bytes >> 4) << 32) | (1 << 62)


def k_major_descriptor(tile: int, rows: int, kk: int) -> int:
    """wgmma.cuh k_major_descriptor: the tile's descriptor plus the step's offset / 16."""
    return smem_descriptor(tile, 0, 1024) + (((kk // 4) * rows * 128 + (kk % 4) * 32) >> 4)


def mn_major_descriptor(tile: int, rows: int, kk: int) -> int:
    """wgmma.cuh mn_major_descriptor: the tile's descriptor plus the step's offset / 16."""
    return smem_descriptor(tile, rows * 128, 1024) + ((kk * 16 * 128) >> 4)


def tile_copy_chunks(dim: int, rows: int, threads: int):
    """attention_wgmma.cu TileCopy: (thread, row, col, byte offset in the tile) of every chunk."""
    chunks_per_row = dim // 8
    rows_per_pass = threads // chunks_per_row
    for tid in range(threads):
        row0, col = tid // chunks_per_row, (tid % chunks_per_row) * 8
        first = swizzled_offset(rows, row0, col)
        for i in range(rows // rows_per_pass):
            yield tid, row0 + i * rows_per_pass, col, first + i * rows_per_pass * 128


def layout(dim: int, tiles: Tiles) -> dict:
    """attention_wgmma.cu SharedLayout: tile offsets from the 1024-aligned base."""
    q_bytes, kv_bytes = tiles.rows * dim * 2, tiles.keys * dim * 2
    return {"q": 0, "k": [q_bytes + i * kv_bytes for i in range(tiles.stages)],
            "v": [q_bytes + (tiles.stages + i) * kv_bytes for i in range(tiles.stages)],
            "end": q_bytes + 2 * tiles.stages * kv_bytes}


def kernel_accumulator_coords(thread: int, reg: int) -> tuple[int, int]:
    """Where attention_wgmma.cu takes accumulator register i of a thread to be, within its
    warpgroup's 64 rows: row warp * 16 + g + 8 * ((i >> 1) & 1) (rows[], the stores), column
    8 * (i >> 2) + 2 * t4 + (i & 1) (softmax's key0 / mask, the output columns dn * 8 + t4 * 2)."""
    warp, lane = divmod(thread % 128, 32)
    g, t4 = lane // 4, lane % 4
    return warp * 16 + g + 8 * ((reg >> 1) & 1), 8 * (reg >> 2) + 2 * t4 + (reg & 1)


def kernel_p_sources(kk: int) -> list[tuple[int, int]]:
    """rescale_and_pack: p[kk][r] = pack(s[8kk + 2r], s[8kk + 2r + 1]): the (lo, hi) S registers."""
    return [(8 * kk + 2 * r, 8 * kk + 2 * r + 1) for r in range(4)]


# ---- shared memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("tiles", TILINGS)
@pytest.mark.parametrize("dim", [64, 128])
def test_tile_copies_cover_each_swizzled_chunk_once(tiles, dim):
    for rows in (tiles.rows, tiles.keys):
        chunks = list(tile_copy_chunks(dim, rows, tiles.threads))
        assert sorted((r, c) for _, r, c, _ in chunks) == [(r, c) for r in range(rows) for c in range(0, dim, 8)]
        for _, row, col, offset in chunks:  # the per-thread offset + i * passes is the chunk's own address
            assert offset == swizzled_offset(rows, row, col)
        offsets = sorted(offset for *_, offset in chunks)
        assert offsets == list(range(0, rows * dim * 2, 16))  # a permutation of the tile's 16-byte chunks


@pytest.mark.parametrize("tiles", TILINGS)
def test_tiles_are_1024_aligned_and_fit_shared_memory(tiles):
    assert _constant(r"kQBytes \+ 2 \* Tile::kKvStages \* kKvBytes\) \+ (\d+);") == 1024
    blocks_per_sm = 2 if tiles.threads == 128 else 1  # Tiles::kBlocksPerSm
    for dim in (64, 128):
        lay = layout(dim, tiles)
        assert all(offset % 1024 == 0 for offset in [lay["q"], *lay["k"], *lay["v"], lay["end"]])
        # + the alignment slack; sm_90: 227 KB a block, 228 KB an SM (1 KB of it reserved per block)
        assert lay["end"] + 1024 <= 227 * 1024
        assert blocks_per_sm * (lay["end"] + 2048) <= 228 * 1024


def fill_shared_memory(dim: int, tiles: Tiles, q, k, v, stage: int):
    """A 1024-aligned shared-memory image (base 1024, as if the window started unaligned) with the
    Q, K[stage], V[stage] tiles written chunk by chunk as TileCopy writes them."""
    base = 1024
    lay = layout(dim, tiles)
    smem = torch.zeros(base + lay["end"], dtype=torch.uint8)
    for name, tensor, offset in (("q", q, lay["q"]), ("k", k, lay["k"][stage]), ("v", v, lay["v"][stage])):
        rows = tiles.rows if name == "q" else tiles.keys
        raw = tensor.view(torch.uint8).reshape(rows, dim * 2)
        for _, row, col, chunk in tile_copy_chunks(dim, rows, tiles.threads):
            smem[base + offset + chunk: base + offset + chunk + 16] = raw[row, col * 2: col * 2 + 16]
    return smem, base


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16)


@pytest.mark.parametrize("tiles, stage", [(tiles, stage) for tiles in TILINGS for stage in range(tiles.stages)])
@pytest.mark.parametrize("dim", [64, 128])
def test_descriptors_read_exactly_the_intended_operands(seeded, tiles, dim, stage):
    q = torch.randn(tiles.rows, dim).to(torch.bfloat16)
    k = torch.randn(tiles.keys, dim).to(torch.bfloat16)
    v = torch.randn(tiles.keys, dim).to(torch.bfloat16)
    smem, base = fill_shared_memory(dim, tiles, q, k, v, stage)
    lay = layout(dim, tiles)
    for kk in range(dim // 16):  # S = Q K^T: A = Q (64 rows of one warpgroup), B = K (K-major)
        cols = slice(kk * 16, kk * 16 + 16)
        for group in range(tiles.rows // GROUP_ROWS):
            desc = k_major_descriptor(base + lay["q"] + group * GROUP_ROWS * 128, tiles.rows, kk)
            got = spec.read_operand(smem, desc, mn=GROUP_ROWS, k=16, major="K")
            assert torch.equal(got, _bits(q[group * GROUP_ROWS:(group + 1) * GROUP_ROWS, cols]))
        desc = k_major_descriptor(base + lay["k"][stage], tiles.keys, kk)
        assert torch.equal(spec.read_operand(smem, desc, mn=tiles.keys, k=16, major="K"), _bits(k[:, cols]))
    for kk in range(tiles.keys // 16):  # O += P V: B = V, N = head dim contiguous (MN-major, trans-b 1)
        desc = mn_major_descriptor(base + lay["v"][stage], tiles.keys, kk)
        got = spec.read_operand(smem, desc, mn=dim, k=16, major="MN")
        assert torch.equal(got, _bits(v[kk * 16:(kk + 1) * 16].T))


def test_kernel_descriptor_encoding_is_the_spec_encoding():
    for address, lbo, sbo in ((1024, 0, 1024), (0x1F400, 16384, 1024), (2048 + 96, 8192, 1024)):
        fields = spec.decode_descriptor(smem_descriptor(address, lbo, sbo))
        assert fields == {"start_address": address, "lbo": lbo, "sbo": sbo, "base_offset": 0, "swizzle": "128B"}
    wgmma_header = (CUDA_DIR / "wgmma.cuh").read_text()
    assert "constexpr uint64_t kSwizzle128 = 1;" in wgmma_header
    assert "uint64_t layout = kSwizzle128" in wgmma_header and "(layout << 62)" in wgmma_header
    assert "(address & 0x3FFFF) >> 4" in wgmma_header


def test_wgmma_instructions_read_b_the_way_the_descriptors_describe():
    """issue_scores passes trans-b 0 (K is K-major), issue_pv trans-b 1 (V is MN-major)."""
    assert "template ss<0>(s, k_major_descriptor(q_tile" in SOURCE
    assert "template rs<1>(o, p[kk], mn_major_descriptor(v_tile, kBlockN, kk), 1)" in SOURCE
    header = (CUDA_DIR / "wgmma.cuh").read_text()
    # ss: scale-a, scale-b 1, trans-a 0, trans-b the template's immediate (operand after scale_d)
    assert header.count('"}, %32, %33, p, 1, 1, 0, %35;') == 2  # m64n64, f16 and bf16
    assert header.count('"}, %64, %65, p, 1, 1, 0, %67;') == 2  # m64n128
    assert header.count('"}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;') == 2  # rs m64n128
    assert header.count('"r"(scale_d), "n"(kTransB));') == 8


def test_generated_wrappers_match_their_generator():
    spec_ = importlib.util.spec_from_file_location("wgmma_gen", CUDA_DIR / "wgmma_gen.py")
    generator = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(generator)
    assert generator.generated_block() in (CUDA_DIR / "wgmma.cuh").read_text(), \
        "wgmma.cuh's generated block is stale: python3 csrc/cuda/wgmma_gen.py --write"


# ---- register fragments --------------------------------------------------------------------------

def test_accumulator_rows_and_columns_are_the_spec_layout():
    for n in sorted({*(tiles.keys for tiles in TILINGS), 64, 128}):
        for thread in range(128):
            for reg in range(n // 2):
                assert kernel_accumulator_coords(thread, reg) == spec.accumulator_coords(thread, reg, n)


@pytest.mark.parametrize("tiles", TILINGS)
def test_packed_scores_are_the_a_operand_of_p_v(tiles):
    """The S accumulator columns 16kk..16kk+15 repacked as p[kk] are P's A fragment for k-step kk."""
    for thread in range(128):
        for kk in range(tiles.keys // 16):
            for r, pair in enumerate(kernel_p_sources(kk)):
                for half, s_reg in enumerate(pair):
                    row, col = spec.accumulator_coords(thread, s_reg, tiles.keys)
                    assert spec.a_register_coords(thread, r, half) == (row, col - 16 * kk)


# ---- the step order, replayed ------------------------------------------------------------------

def forward_model(q, k, v, causal, scale, tiles: Tiles):
    """attention_fwd_wgmma_kernel in float64, one (batch, head) at a time, in its step order:
    step j: S_j -> softmax (masked past n_full) -> wait for P_{j-1} V_{j-1} -> O *= alpha_j;
    then a last P V. Every query block runs its own key blocks, heaviest block first."""
    heads, seq_q, dim = q.shape[1:]
    seq_k = k.shape[2]
    kx, vx = expand_kv(k, heads), expand_kv(v, heads)
    scale_log2 = max(abs(scale) * math.log2(math.e), 2.0 ** -126)
    q_signed = -q if scale < 0 else q
    diag = seq_k - seq_q
    out, lse = torch.empty_like(q), torch.empty(q.shape[:3], dtype=q.dtype)
    n_m = -(-seq_q // tiles.rows)
    for block_x in range(n_m):
        m0 = (n_m - 1 - block_x) * tiles.rows
        rows = torch.arange(m0, m0 + tiles.rows)
        valid = rows < seq_q
        q_tile = torch.zeros(*q.shape[:2], tiles.rows, dim, dtype=q.dtype)
        q_tile[:, :, valid] = q_signed[:, :, rows[valid]]
        limit = torch.tensor([min(seq_k, int(r) + diag + 1) if causal else seq_k for r in rows])
        end = min(seq_k, m0 + tiles.rows + diag) if causal else seq_k
        n_blocks = -(-end // tiles.keys)
        n_full = (min(seq_k, m0 + diag + 1) if causal else seq_k) // tiles.keys
        o = torch.zeros_like(q_tile)
        row_max = torch.full(q_tile.shape[:3], -math.inf, dtype=q.dtype)
        row_sum = torch.zeros_like(row_max)
        p_prev = v_prev = None

        def tile(source, block):
            keys = torch.arange(block * tiles.keys, (block + 1) * tiles.keys)
            padded = torch.zeros(*q.shape[:2], tiles.keys, dim, dtype=q.dtype)
            padded[:, :, keys < seq_k] = source[:, :, keys[keys < seq_k]]
            return padded, keys

        for block in range(n_blocks):
            k_tile, keys = tile(kx, block)
            s = q_tile @ k_tile.transpose(-1, -2)
            if block >= n_full:
                s = s.masked_fill(keys[None, :] >= limit[:, None], -math.inf)
            new_max = torch.maximum(row_max, s.amax(-1))
            alpha = torch.exp2((row_max - new_max) * scale_log2)
            s = torch.exp2(s * scale_log2 - (new_max * scale_log2)[..., None])
            row_sum = row_sum * alpha + s.sum(-1)
            row_max = new_max
            if p_prev is not None:
                o = o + p_prev @ v_prev
            o = o * alpha[..., None]
            p_prev, v_prev = s, tile(vx, block)[0]
        o = o + p_prev @ v_prev
        out[:, :, rows[valid]] = (o / row_sum[..., None])[:, :, valid]
        lse[:, :, rows[valid]] = ((row_max * scale_log2 + torch.log2(row_sum)) * math.log(2))[:, :, valid]
    return out, lse


# (B, H, Hkv, T, S, D): one block, ragged tails, T < S causal, GQA, two query blocks, a query block
# whose second warpgroup is all padding, the diagonal off a block edge.
MODEL_SHAPES = [((1, 2, 2, 1, 1, 16), True), ((1, 4, 1, 7, 300, 16), True), ((1, 2, 1, 130, 200, 16), True),
                ((1, 2, 1, 65, 64, 16), False), ((1, 2, 2, 300, 300, 16), True), ((1, 1, 1, 40, 170, 16), True),
                ((1, 2, 1, 256, 384, 16), True), ((1, 2, 1, 150, 187, 16), False)]


@pytest.mark.parametrize("tiles", TILINGS)
@pytest.mark.parametrize("shape, causal", MODEL_SHAPES)
@pytest.mark.parametrize("scale", [0.25, -0.7])
def test_step_order_matches_reference(seeded, tiles, shape, causal, scale):
    batch, heads, kv_heads, seq_q, seq_k, dim = shape
    q = torch.randn(batch, heads, seq_q, dim, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    out, lse = forward_model(q, k, v, causal, scale, tiles)
    want, want_lse = reference64(q, k, v, causal, scale)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-12)
