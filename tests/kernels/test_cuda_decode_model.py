"""CPU model of csrc/cuda/attention_decode.cu (split-KV decoding on tensor cores).

No GPU runs the kernel in CI, so its index math is replayed here lane by lane in float64:

- mma.m16n8k16 is emulated from the PTX ISA's fragment tables (written out below from the ISA
  text, independently of the kernel): each lane's registers are placed in A, B and C by the
  tables, D = A B + C, and D is handed back to the lanes by the C table.
- The kernel's loads, register uses, shuffles and stores are mirrored expression by expression,
  and the expressions themselves are looked up in the source so the two cannot drift apart
  silently; constants are read from the .cu file.
- Warps' tiles, keys masked past a split, warps without a tile, heads past the group (zero
  queries, never stored), the warp merge, the split partials and the combine together match
  attention in float64 on odd lengths, splits shorter than a block step, GQA groups 1, 4, 8 and
  wider than one block (chunks), head dims 64 and 128.
- split_plan never leaves a split empty, cuts whole block steps, and fills an H100.

What this cannot check is the compiled code (and the 16-bit rounding of P, which the GPU tests
in test_attention_backends.py bound): a change to an expression in attention_decode.cu needs the
matching change here.
"""

import math
import re
from pathlib import Path

import pytest
import torch
from ptx_fragments import ptx_a, ptx_b, ptx_c

from fastllm.kernels.attention import cuda as launcher
from fastllm.kernels.attention.cuda import split_plan
from fastllm.kernels.attention.ref import expand_kv

SOURCE = (Path(__file__).resolve().parents[2] / "csrc" / "cuda" / "attention_decode.cu").read_text()


def _constant(name: str) -> int:
    match = re.search(rf"constexpr int {name} = (\d+);", SOURCE)
    assert match, f"constexpr int {name} not found in attention_decode.cu"
    return int(match.group(1))


THREADS = _constant("kThreads")
WARPS = THREADS // 32
MIN_BLOCKS = _constant("kMinBlocks")
MAX_GROUP = _constant("kMaxGroup")
TILE = _constant("kTileKeys")
COMBINE_THREADS = _constant("kCombineThreads")
F64 = torch.float64

LANE = torch.arange(32)
G, T = LANE // 4, LANE % 4

# Expressions of the kernel that the model below mirrors (whitespace as in the source).
MIRRORED = [
    "const T* k_lane = k_base + g * ks + 8 * t;",
    "const T* v_lane = v_base + 2 * t * vs + 8 * g;",
    "const bool valid = tile + 8 * j + g < end;",
    "load_stream(row + 8 * j * ks + 32 * c)",
    "const int offset = (r >> 1) + 8 * (r & 1);",
    "const bool valid = tile + 2 * t + offset < end;",
    "load_stream(row + offset * vs + 64 * h)",
    "(first_head + g) * a.q_strides[1] + 32 * c + 8 * t);",
    "q_frag[2 * c + h][0] = word(raw, 2 * h);",
    "q_frag[2 * c + h][1] = word(raw, 2 * h + 1);",
    "const uint32_t ka[4] = {word(k_raw[0][c], 2 * h), word(k_raw[1][c], 2 * h), word(k_raw[0][c], 2 * h + 1),",
    "MmaOp<T>::run(h ? s_odd : s, ka, q_frag[step]);",
    "for (int e = 0; e < 4; ++e) s[e] += s_odd[e];",
    "const bool valid_lo = tile + g < end, valid_hi = tile + g + 8 < end;",
    "for (int offset = 4; offset < 32; offset *= 2)",
    "pk[e] = MmaOp<T>::pack(p_lo, p_hi);",
    "const int src0 = 8 * t + g / 2, src1 = src0 + 4;",
    "const uint32_t pb[2] = {g % 2 ? x01 : x00, g % 2 ? x11 : x10};",
    "const int lo = i, hi = kMTiles + i;",
    "const uint32_t va[4] = {pair(v_raw[0][lo / 8], v_raw[1][lo / 8], lo % 8),",
    "pair(v_raw[0][hi / 8], v_raw[1][hi / 8], hi % 8),",
    "pair(v_raw[2][lo / 8], v_raw[3][lo / 8], lo % 8),",
    "pair(v_raw[2][hi / 8], v_raw[3][hi / 8], hi % 8)};",
    "o[i][0] *= alpha[0];",
    "o[i][1] *= alpha[1];",
    "o[i][2] *= alpha[0];",
    "o[i][3] *= alpha[1];",
    "const int idx = u * kMTiles + i, d = 64 * (idx / 8) + 8 * g + idx % 8;",
    "warp_acc[warp][2 * t + e][d] = o[i][2 * u + e];",
    "warp_max[warp][2 * t + e] = m[e];",
    "int64_t tile = begin + warp * kTileKeys;",
    "for (; tile < end; tile += kWarps * kTileKeys) {",
    "const int64_t row = split * a.batch * a.heads + b * a.heads + first_head + i;",
    "for (int64_t s = slice; s < w.n_splits; s += kSlices)",
]


def test_the_mirrored_expressions_are_the_kernels():
    text = re.sub(r"\s+", " ", SOURCE)
    for expression in MIRRORED:
        assert re.sub(r"\s+", " ", expression) in text, expression


# ---- the PTX ISA's tables for mma.m16n8k16 (ptx_fragments.py), as index tensors ---------------

A_IDX = torch.tensor([[ptx_a(lane, i) for i in range(8)] for lane in range(32)])
B_IDX = torch.tensor([[ptx_b(lane, i) for i in range(4)] for lane in range(32)])
C_IDX = torch.tensor([[ptx_c(lane, i) for i in range(4)] for lane in range(32)])


def test_fragment_tables_cover_each_matrix_once():
    for idx, shape in ((A_IDX, (16, 16)), (B_IDX, (16, 8)), (C_IDX, (16, 8))):
        flat = (idx[..., 0] * shape[1] + idx[..., 1]).flatten()
        assert sorted(flat.tolist()) == list(range(shape[0] * shape[1]))


def mma(c, a, b):
    """c: (32, 4) accumulators; a: (32, 4, 2) A registers as (low, high) halves; b: (32, 2, 2)."""
    A = torch.zeros(16, 16, dtype=F64)
    A[A_IDX[..., 0], A_IDX[..., 1]] = a.reshape(32, 8)
    B = torch.zeros(16, 8, dtype=F64)
    B[B_IDX[..., 0], B_IDX[..., 1]] = b.reshape(32, 4)
    C = torch.zeros(16, 8, dtype=F64)
    C[C_IDX[..., 0], C_IDX[..., 1]] = c
    D = A @ B + C
    return D[C_IDX[..., 0], C_IDX[..., 1]]


# ---- registers ---------------------------------------------------------------------------------

def load16(x, rows, col0, valid):
    """16 bytes (8 elements) of x's row rows[lane] from column col0[lane]; zeros where not valid
    (load_stream under `valid ? ... : make_uint4(0u, 0u, 0u, 0u)`)."""
    cols = col0[:, None] + torch.arange(8)
    out = x[rows.clamp(0, x.shape[0] - 1)[:, None], cols]
    return torch.where(valid[:, None], out, 0.0)


def word(raw, i):
    """word(raw, i): elements 2i (low half) and 2i + 1 (high half)."""
    return raw[:, 2 * i:2 * i + 2]


def pair(lo, hi, e):
    """pair(lo, hi, e): element e of lo in the low half, element e of hi in the high half."""
    return torch.stack([lo[:, e], hi[:, e]], -1)


def shfl_xor(x, offset):
    return x[LANE ^ offset]


# ---- the split kernel, one block ---------------------------------------------------------------

def split_block(q, k, v, b, kv_head, chunk, split, per_split, scale):
    """attention_decode_split_kernel for block (split, (b, kv_head, chunk)): its n_heads rows of
    (partial_max, partial_sum, partial_out)."""
    heads, kv_heads, seq_k, dim = q.shape[1], k.shape[1], k.shape[2], k.shape[3]
    group = heads // kv_heads
    first_head = kv_head * group + chunk * MAX_GROUP
    n_heads = min(group - chunk * MAX_GROUP, MAX_GROUP)
    k_chunks, steps, m_tiles, halves = dim // 32, dim // 16, dim // 16, dim // 64
    scale_log2 = scale * math.log2(math.e)

    q_frag = []  # [step] -> (32, 2 registers, 2 halves)
    for c in range(k_chunks):
        raw = load16(q[b, :, 0], first_head + G, 32 * c + 8 * T, G < n_heads)
        for h in range(2):
            q_frag.append(torch.stack([word(raw, 2 * h), word(raw, 2 * h + 1)], 1))

    begin = split * per_split
    end = min(seq_k, begin + per_split)
    kx, vx = k[b, kv_head], v[b, kv_head]
    warp_max = torch.full((WARPS, MAX_GROUP), math.nan, dtype=F64)
    warp_sum = torch.full((WARPS, MAX_GROUP), math.nan, dtype=F64)
    warp_acc = torch.full((WARPS, MAX_GROUP, dim), math.nan, dtype=F64)
    writes = torch.zeros(WARPS, MAX_GROUP, dim, dtype=torch.long)
    src0 = 8 * T + G // 2
    src1 = src0 + 4
    for warp in range(WARPS):
        m = torch.full((32, 2), -math.inf, dtype=F64)
        lsum = torch.zeros(32, 2, dtype=F64)
        o = torch.zeros(m_tiles, 32, 4, dtype=F64)
        tile = begin + warp * TILE
        while tile < end:
            k_raw = [[load16(kx, tile + G + 8 * j, 32 * c + 8 * T, tile + 8 * j + G < end) for c in range(k_chunks)]
                     for j in range(2)]
            v_raw = []
            for r in range(4):
                offset = (r >> 1) + 8 * (r & 1)
                rows = tile + 2 * T + offset
                v_raw.append([load16(vx, rows, 64 * h + 8 * G, rows < end) for h in range(halves)])
            acc = [torch.zeros(32, 4, dtype=F64), torch.zeros(32, 4, dtype=F64)]  # s, s_odd
            for step in range(steps):
                c, h = divmod(step, 2)
                ka = torch.stack([word(k_raw[0][c], 2 * h), word(k_raw[1][c], 2 * h),
                                  word(k_raw[0][c], 2 * h + 1), word(k_raw[1][c], 2 * h + 1)], 1)
                acc[h] = mma(acc[h], ka, q_frag[step])
            s = acc[0] + acc[1]
            # s[:, e] = S[head 2t+e][key tile+g], s[:, 2+e] = S[head 2t+e][key tile+g+8]
            heads_of_lane = first_head + 2 * T[:, None] + torch.arange(2)
            for e, key in ((0, tile + G), (1, tile + G), (2, tile + G + 8), (3, tile + G + 8)):
                head, ok = heads_of_lane[:, e % 2], (key < end) & (2 * T + e % 2 < n_heads)
                want = (q[b, head.clamp(max=heads - 1), 0] * kx[key.clamp(max=seq_k - 1)]).sum(-1)
                torch.testing.assert_close(s[ok, e], want[ok], rtol=1e-12, atol=1e-12)
            valid_lo, valid_hi = tile + G < end, tile + G + 8 < end
            alpha = torch.empty(32, 2, dtype=F64)
            pk = torch.empty(32, 2, 2, dtype=F64)
            for e in range(2):
                s_lo = torch.where(valid_lo, s[:, e] * scale_log2, -math.inf)
                s_hi = torch.where(valid_hi, s[:, 2 + e] * scale_log2, -math.inf)
                tile_max = torch.maximum(s_lo, s_hi)
                for offset in (4, 8, 16):
                    tile_max = torch.maximum(tile_max, shfl_xor(tile_max, offset))
                new_max = torch.maximum(m[:, e], tile_max)
                assert torch.isfinite(new_max).all()  # key `tile` is in range
                alpha[:, e] = torch.exp2(m[:, e] - new_max)
                p_lo, p_hi = torch.exp2(s_lo - new_max), torch.exp2(s_hi - new_max)
                lsum[:, e] = lsum[:, e] * alpha[:, e] + (p_lo + p_hi)
                m[:, e] = new_max
                pk[:, e] = torch.stack([p_lo, p_hi], -1)
            x00, x01, x10, x11 = pk[src0, 0], pk[src0, 1], pk[src1, 0], pk[src1, 1]
            odd = (G % 2 == 1)[:, None]
            pb = torch.stack([torch.where(odd, x01, x00), torch.where(odd, x11, x10)], 1)
            for i in range(m_tiles):
                o[i] = o[i] * alpha[:, [0, 1, 0, 1]]
                lo, hi = i, m_tiles + i
                va = torch.stack([pair(v_raw[0][lo // 8], v_raw[1][lo // 8], lo % 8),
                                  pair(v_raw[0][hi // 8], v_raw[1][hi // 8], hi % 8),
                                  pair(v_raw[2][lo // 8], v_raw[3][lo // 8], lo % 8),
                                  pair(v_raw[2][hi // 8], v_raw[3][hi // 8], hi % 8)], 1)
                o[i] = mma(o[i], va, pb)
            tile += WARPS * TILE
        for e in range(2):
            for offset in (4, 8, 16):
                lsum[:, e] = lsum[:, e] + shfl_xor(lsum[:, e], offset)
            for lane in range(32):  # every lane of a column agrees, so lane g == 0 speaks for it
                assert m[lane, e] == m[T[lane], e] and lsum[lane, e] == lsum[T[lane], e]
                if G[lane] == 0:
                    warp_max[warp, 2 * T[lane] + e] = m[lane, e]
                    warp_sum[warp, 2 * T[lane] + e] = lsum[lane, e]
        for i in range(m_tiles):
            for u in range(2):
                idx = u * m_tiles + i
                d = 64 * (idx // 8) + 8 * G + idx % 8
                for e in range(2):
                    warp_acc[warp, 2 * T + e, d] = o[i][:, 2 * u + e]
                    writes[warp, 2 * T + e, d] += 1
    assert (writes == 1).all()  # O^T's accumulators are each (head, d) once

    out_max, out_sum, out_acc = [], [], []
    for i in range(n_heads):
        block_max = warp_max[:, i].max()
        weight = torch.where(warp_max[:, i] == -math.inf, 0.0, torch.exp2(warp_max[:, i] - block_max))
        out_max.append(block_max)
        out_sum.append((warp_sum[:, i] * weight).sum())
        out_acc.append((warp_acc[:, i] * weight[:, None]).sum(0))
    return first_head, torch.stack(out_max), torch.stack(out_sum), torch.stack(out_acc)


def decode_model(q, k, v, scale, n_splits, per_split):
    """Both kernels: the split grid (n_splits, B * Hkv * chunks) fills the workspace (every row
    written once), then attention_decode_combine_kernel merges the splits."""
    batch, heads, _, dim = q.shape
    kv_heads = k.shape[1]
    chunks = -(-(heads // kv_heads) // MAX_GROUP)
    rows = batch * heads
    partial_out = torch.full((n_splits * rows, dim), math.nan, dtype=F64)
    partial_max = torch.full((n_splits * rows,), math.nan, dtype=F64)
    partial_sum = torch.full((n_splits * rows,), math.nan, dtype=F64)
    for split in range(n_splits):
        for y in range(batch * kv_heads * chunks):
            chunk, bkv = y % chunks, y // chunks
            b, kv_head = bkv // kv_heads, bkv % kv_heads
            first, m, lsum, acc = split_block(q, k, v, b, kv_head, chunk, split, per_split, scale)
            row = split * batch * heads + b * heads + first + torch.arange(len(m))
            assert partial_max[row].isnan().all()  # no row written twice
            partial_max[row], partial_sum[row], partial_out[row] = m, lsum, acc
    assert not partial_out.isnan().any() and not partial_max.isnan().any()
    assert torch.isfinite(partial_max).all()  # no split without a key

    slices = COMBINE_THREADS // dim
    out = torch.empty(batch, heads, 1, dim, dtype=F64)
    lse = torch.empty(batch, heads, 1, dtype=F64)
    for bh in range(rows):
        pm = partial_max[bh::rows]
        ps = partial_sum[bh::rows]
        po = partial_out[bh::rows]
        global_max = pm.max()
        total = (ps * torch.exp2(pm - global_max)).sum()
        value = torch.zeros(dim, dtype=F64)
        for slice_ in range(slices):
            s = torch.tensor(range(slice_, n_splits, slices), dtype=torch.long)
            value += (po[s] * torch.exp2(pm[s] - global_max)[:, None]).sum(0)
        out[bh // heads, bh % heads, 0] = value / total
        lse[bh // heads, bh % heads, 0] = (global_max + torch.log2(total)) * math.log(2)
    return out, lse


def reference64(q, k, v, scale):
    scores = q @ expand_kv(k, q.shape[1]).transpose(-1, -2) * scale
    return torch.softmax(scores, -1) @ expand_kv(v, q.shape[1]), torch.logsumexp(scores, -1)


# (B, H, Hkv, S, D), (n_splits, keys_per_split) or None for split_plan on 132 SMs: a partial tile
# and partial block step (300), a last split of 13 keys (warps 1-3 without a tile), G = 1, 4, 8,
# 12 and 16 (chunks of 8, the last one short), S = 1.
DECODE_CASES = [
    ((1, 4, 1, 300, 64), None),
    ((2, 8, 2, 77, 128), (2, 64)),
    ((3, 12, 3, 130, 128), (3, 64)),
    ((1, 16, 1, 97, 64), (2, 64)),
    ((1, 12, 1, 50, 128), (1, 64)),
    ((2, 2, 2, 1, 64), None),
    ((1, 8, 1, 333, 128), (3, 128)),
    ((1, 2, 2, 40, 128), (1, 64)),
]


@pytest.mark.parametrize("shape, plan", DECODE_CASES)
def test_decode_kernels_match_attention(seeded, shape, plan):
    batch, heads, kv_heads, seq_k, dim = shape
    q = torch.randn(batch, heads, 1, dim, dtype=F64)
    k = torch.randn(batch, kv_heads, seq_k, dim, dtype=F64)
    v = torch.randn(batch, kv_heads, seq_k, dim, dtype=F64)
    n_splits, per_split = plan or split_plan(batch, kv_heads, heads // kv_heads, seq_k, 132)
    assert (n_splits - 1) * per_split < seq_k <= n_splits * per_split
    out, lse = decode_model(q, k, v, dim ** -0.5, n_splits, per_split)
    want, want_lse = reference64(q, k, v, dim ** -0.5)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-12)


# ---- index maps on their own -------------------------------------------------------------------

@pytest.mark.parametrize("dim", [64, 128])
def test_k_steps_sum_every_d_once_with_the_same_order_for_k_and_q(dim):
    """Lane (g, t), k-step 2c + h: A (K) element a_i and B (Q) element b_i hold d = 32c + 8t + 4h
    + (0, 1 for the low register, 2, 3 for the high one): the k index maps to the same d in both."""
    for c in range(dim // 32):
        for h in range(2):
            a_d, b_d = {}, {}
            for lane in range(32):
                t = lane % 4
                for i in range(8):  # ka = {K[g] w2h, K[g+8] w2h, K[g] w2h+1, K[g+8] w2h+1}
                    reg, half = divmod(i, 2)
                    a_d[ptx_a(lane, i)[1]] = 32 * c + 8 * t + 4 * h + 2 * (reg >= 2) + half
                for i in range(4):  # q_frag = {Q w2h, Q w2h+1}
                    reg, half = divmod(i, 2)
                    b_d[ptx_b(lane, i)[0]] = 32 * c + 8 * t + 4 * h + 2 * reg + half
            assert a_d == b_d and sorted(a_d) == list(range(16))
    covered = sorted(32 * c + 8 * t + 4 * h + x for c in range(dim // 32) for h in range(2)
                     for t in range(4) for x in range(4))
    assert covered == list(range(dim))


def test_p_transpose_sources_hold_the_keys_v_rows_hold():
    """P^T's b0 (kappa 2t, 2t+1) and b1 (kappa 2t+8, 2t+9) come from lanes 8t + g/2 and
    8t + 4 + g/2, whose S^T accumulators hold keys g', g'+8 for heads 2t', 2t'+1; V^T's
    registers a0 a1 read V rows r = 0, 1 and a2 a3 rows r = 2, 3 of 2t + (r >> 1) + 8 (r & 1)."""
    kappa_key = {}
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for reg, src in ((0, 8 * t + g // 2), (1, 8 * t + 4 + g // 2)):
            src_g, src_t = src // 4, src % 4
            assert 2 * src_t + g % 2 == g  # the source's column e = g % 2 is head g
            keys = (src_g, src_g + 8)  # pk = (P[.][g'], P[.][g'+8])
            for half in range(2):
                k_idx, n = ptx_b(lane, 2 * reg + half)
                assert n == g
                kappa_key.setdefault(k_idx, set()).add(keys[half])
            rows = [2 * t + (r >> 1) + 8 * (r & 1) for r in (2 * reg, 2 * reg + 1)]
            assert list(keys) == rows
    assert all(len(keys) == 1 for keys in kappa_key.values())  # one key order for every lane
    assert sorted(keys.pop() for keys in kappa_key.values()) == list(range(16))


# ---- split_plan --------------------------------------------------------------------------------

def test_launcher_constants_match_the_kernel():
    assert launcher.BLOCKS_PER_SM == MIN_BLOCKS
    assert launcher.DECODE_GROUP == MAX_GROUP
    assert launcher.BLOCK_KEYS == WARPS * TILE
    assert COMBINE_THREADS % 128 == 0  # kSlices = kCombineThreads / D is whole for D = 64, 128


def test_split_plan_never_leaves_a_split_empty_and_cuts_whole_steps():
    for batch in (1, 3, 64):
        for kv_heads, group in ((1, 1), (2, 4), (8, 4), (1, 32), (3, 12)):
            for seq_k in (1, 2, 63, 64, 65, 77, 255, 256, 257, 1000, 4097, 32768, 200000):
                for sms in (1, 108, 132):
                    n_splits, per_split = split_plan(batch, kv_heads, group, seq_k, sms)
                    assert 1 <= n_splits <= launcher.MAX_SPLITS and per_split % launcher.BLOCK_KEYS == 0
                    assert (n_splits - 1) * per_split < seq_k <= n_splits * per_split


@pytest.mark.parametrize("batch, seq_k", [(1, 32768), (8, 32768), (32, 4096), (4, 131072)])
def test_split_plan_fills_an_h100(batch, seq_k):
    """bench_attention's decode shapes (32 heads / 8 kv heads) on 132 SMs: the grid's last wave
    is at least 90% full and a block still streams a few hundred keys or more."""
    n_splits, per_split = split_plan(batch, 8, 4, seq_k, 132)
    waves = batch * 8 * n_splits / (launcher.BLOCKS_PER_SM * 132)
    assert waves / math.ceil(waves) >= 0.9, (n_splits, waves)
    assert per_split >= launcher.MIN_KEYS_PER_SPLIT
