"""CPU models of the index math in csrc/cuda/attention.cu and attention_decode.cu.

No GPU runs these kernels in CI, so what can be checked without one is checked here:

- Fragment layouts. The PTX ISA tables for mma.m16n8k16 (16-bit A and B, fp32 C) and for
  ldmatrix.x4 (plain and .trans) are written out below from the ISA text, independently of the
  kernel; the kernel's ldmatrix row addresses and register uses (mirrored from attention.cu, the
  line is named at each) must hand every mma exactly the elements its operand layout asks for,
  and the S accumulators re-packed as P must form P's A fragment.
- Shared memory. With the kernel's pitch (read from attention.cu) the 8 rows of every ldmatrix
  phase fall in distinct banks, and every cp.async / ldmatrix address is 16-byte aligned.
- Tiling and online softmax. The kernel's loop (query blocks launched last-first, key blocks
  split into unmasked full blocks and masked diagonal / tail blocks, the causal frontier, the
  row max of raw sign-folded scores with the scale folded into the exponent's FFMA, base-2
  exponentials, lse) replayed in float64 on tiny shapes matches attention_ref; full blocks hold
  no hidden key, the per-lane 32-bit mask of the others is the reference mask, blocks the kernel
  skips hold no visible key, and no row max is -inf after a block.
- Tile copies. Each thread's cp.async rows and columns cover a K/V tile exactly once.
The decoding kernel's models are in test_cuda_decode_model.py.

These models check the kernels' design and index expressions, not the compiled code: a change to
an expression in the .cu files needs the matching change here (constants are read from source).
"""

import math
import re
from pathlib import Path

import pytest
import torch
from ptx_fragments import ptx_a, ptx_b, ptx_c

from fastllm.kernels.attention.ref import attention_ref, causal_mask, expand_kv

CUDA_DIR = Path(__file__).resolve().parents[2] / "csrc" / "cuda"


def _constant(file: str, pattern: str) -> int:
    match = re.search(pattern, (CUDA_DIR / file).read_text())
    assert match, f"{pattern!r} not found in csrc/cuda/{file}"
    return int(match.group(1))


BLOCK_M = _constant("attention.cu", r"constexpr int kBlockM = (\d+);")
BLOCK_N = _constant("attention.cu", r"constexpr int kBlockN = (\d+);")
FWD_THREADS = _constant("attention.cu", r"constexpr int kThreads = (\d+);")
PITCH_PAD = _constant("attention.cu", r"constexpr int kPitch = D \+ (\d+);")


# ---- ldmatrix (the mma fragment tables are in ptx_fragments.py) ------------------------------

def ldmatrix_x4(addresses, trans=False):
    """What ldmatrix.x4 (.trans) puts in each lane's 4 registers: [lane][reg] = (lo, hi), each the
    (row, col) of shared memory it came from. addresses[lane] = (row, col) of the first element of
    row lane % 8 of matrix lane // 8 (8 contiguous 16-bit values)."""
    regs = []
    for lane in range(32):
        per_lane = []
        for m in range(4):
            if trans:  # column lane // 4, rows 2 (lane % 4) and 2 (lane % 4) + 1 of matrix m
                pair = [addresses[8 * m + 2 * (lane % 4) + h] for h in (0, 1)]
                per_lane.append(tuple((r, c + lane // 4) for r, c in pair))
            else:  # row lane // 4, columns 2 (lane % 4) and 2 (lane % 4) + 1 of matrix m
                r, c = addresses[8 * m + lane // 4]
                per_lane.append(tuple((r, c + 2 * (lane % 4) + h) for h in (0, 1)))
        regs.append(per_lane)
    return regs


def _ld_lane(lane):
    return lane % 8, lane // 8  # ld_row, ld_mat (attention.cu: "lane gives row lane % 8 of matrix lane / 8")


# ---- fragments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("head_dim", [64, 128])
def test_q_fragments_are_the_a_operand(head_dim):
    """attention.cu, Q -> q_frag: row = warp*16 + (ld_mat&1)*8 + ld_row, col = kk*16 + (ld_mat>>1)*8."""
    for warp in range(FWD_THREADS // 32):
        for kk in range(head_dim // 16):
            addresses = []
            for lane in range(32):
                ld_row, ld_mat = _ld_lane(lane)
                addresses.append((warp * 16 + (ld_mat & 1) * 8 + ld_row, kk * 16 + (ld_mat >> 1) * 8))
            regs = ldmatrix_x4(addresses)
            for lane in range(32):
                for reg in range(4):
                    for half in range(2):
                        row, col = ptx_a(lane, 2 * reg + half)
                        assert regs[lane][reg][half] == (warp * 16 + row, kk * 16 + col), (warp, kk, lane, reg)


def _lane_address(byte_address, pitch):
    """(row, col) of a byte offset inside a tile of 16-bit values with row pitch `pitch`."""
    assert byte_address % 16 == 0
    return divmod(byte_address // 2, pitch)


def k_lane(lane, pitch):
    """attention.cu: k_lane = (((ld_mat >> 1) * 8 + ld_row) * kPitch + (ld_mat & 1) * 8) * 2."""
    ld_row, ld_mat = _ld_lane(lane)
    return (((ld_mat >> 1) * 8 + ld_row) * pitch + (ld_mat & 1) * 8) * 2


def v_lane(lane, pitch):
    """attention.cu: v_lane = (((ld_mat & 1) * 8 + ld_row) * kPitch + (ld_mat >> 1) * 8) * 2."""
    ld_row, ld_mat = _ld_lane(lane)
    return (((ld_mat & 1) * 8 + ld_row) * pitch + (ld_mat >> 1) * 8) * 2


@pytest.mark.parametrize("head_dim", [64, 128])
def test_k_fragments_are_the_b_operand_of_q_kt(head_dim):
    """attention.cu, S = Q K^T: ldmatrix_x4(b_frag, ks + (j * 8 * kPitch + kk * 16) * 2) with
    ks = tile + k_lane; registers 0-1 feed n-tile j, 2-3 n-tile j+1. B[k][n] = K[key n][d k]."""
    pitch = head_dim + PITCH_PAD
    for kk in range(head_dim // 16):
        for j in range(0, BLOCK_N // 8, 2):
            addresses = [_lane_address(k_lane(lane, pitch) + (j * 8 * pitch + kk * 16) * 2, pitch)
                         for lane in range(32)]
            regs = ldmatrix_x4(addresses)
            for lane in range(32):
                for tile, first in ((j, 0), (j + 1, 2)):
                    for reg in range(2):
                        for half in range(2):
                            k_idx, n_idx = ptx_b(lane, 2 * reg + half)
                            want = (tile * 8 + n_idx, kk * 16 + k_idx)  # (key, d)
                            assert regs[lane][first + reg][half] == want, (kk, j, lane, reg)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_v_fragments_are_the_b_operand_of_p_v(head_dim):
    """attention.cu, O += P V: ldmatrix_x4_trans(b_frag, vs + (kk * 16 * kPitch + dn * 8) * 2) with
    vs = tile + v_lane; registers 0-1 feed d-tile dn, 2-3 d-tile dn+1. B[k][n] = V[key k][d n]."""
    pitch = head_dim + PITCH_PAD
    for kk in range(BLOCK_N // 16):
        for dn in range(0, head_dim // 8, 2):
            addresses = [_lane_address(v_lane(lane, pitch) + (kk * 16 * pitch + dn * 8) * 2, pitch)
                         for lane in range(32)]
            regs = ldmatrix_x4(addresses, trans=True)
            for lane in range(32):
                for tile, first in ((dn, 0), (dn + 1, 2)):
                    for reg in range(2):
                        for half in range(2):
                            k_idx, n_idx = ptx_b(lane, 2 * reg + half)
                            want = (kk * 16 + k_idx, tile * 8 + n_idx)  # (key, d)
                            assert regs[lane][first + reg][half] == want, (kk, dn, lane, reg)


def test_s_accumulators_repacked_are_the_a_operand_of_p():
    """attention.cu, p_frag = {pack(s[2kk][0], s[2kk][1]), pack(s[2kk][2], s[2kk][3]),
    pack(s[2kk+1][0], s[2kk+1][1]), pack(s[2kk+1][2], s[2kk+1][3])}, low half first."""
    for kk in range(BLOCK_N // 16):
        for lane in range(32):
            p_frag = [((2 * kk, 0), (2 * kk, 1)), ((2 * kk, 2), (2 * kk, 3)),
                      ((2 * kk + 1, 0), (2 * kk + 1, 1)), ((2 * kk + 1, 2), (2 * kk + 1, 3))]
            for reg in range(4):
                for half in range(2):
                    tile, e = p_frag[reg][half]
                    row, col = ptx_c(lane, e)
                    a_row, a_col = ptx_a(lane, 2 * reg + half)
                    assert (row, tile * 8 + col) == (a_row, kk * 16 + a_col), (kk, lane, reg, half)


def test_mask_and_store_indices_follow_the_c_layout():
    """attention.cu: s[j][e] is key block * 64 + j*8 + t4*2 + (e&1) (the mask in attention_rows.cuh
    compares j*8 + (e&1) with limit[e>>1] - key0, key0 = block*64 + t4*2, for i = 4j + e) of row
    rows[e>>1] = g + 8*(e>>1); the store (store_output_rows) writes o[dn][2r], o[dn][2r+1] to row
    g + 8r, columns dn*8 + t4*2 (+1)."""
    for lane in range(32):
        g, t4 = lane >> 2, lane & 3
        for e in range(4):
            assert (g + 8 * (e >> 1), t4 * 2 + (e & 1)) == ptx_c(lane, e)
        for r in range(2):
            assert [(g + 8 * r, t4 * 2 + h) for h in (0, 1)] == [ptx_c(lane, 2 * r + h) for h in (0, 1)]
        # the row max / sum reductions (xor 1, xor 2) stay inside the 4 lanes that share a row
        assert {(lane ^ x) >> 2 for x in (0, 1, 2, 3)} == {g}


# ---- shared memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("head_dim", [64, 128])
def test_padded_pitch_makes_every_ldmatrix_phase_conflict_free(head_dim):
    """Each 8-lane phase of an ldmatrix reads 8 rows of 16 bytes: with pitch D + pad halves they
    cover all 32 banks once. Addresses are 16-byte aligned (cp.async 16, ldmatrix rows)."""
    pitch = head_dim + PITCH_PAD
    assert (pitch * 2) % 16 == 0
    tile_bytes = BLOCK_N * pitch * 2
    # two stages of K and V (shared_bytes in attention.cu): one block fits every built arch (99 KB
    # a block on sm_86 / sm_89), two per SM on sm_80 (164 KB an SM, 1 KB reserved per block) and
    # sm_90 (228 KB)
    assert 2 * 2 * tile_bytes <= 99 * 1024
    assert 2 * (2 * 2 * tile_bytes + 1024) <= 164 * 1024
    for row0 in range(0, BLOCK_N, 8):
        for col in range(0, head_dim, 8):
            banks = []
            for r in range(8):
                address = ((row0 + r) * pitch + col) * 2
                assert address % 16 == 0
                banks += [(address // 4 + w) % 32 for w in range(4)]
            assert sorted(banks) == list(range(32)), (head_dim, row0, col)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_tile_copies_cover_every_chunk_once(head_dim):
    """attention.cu load_tile: thread tid copies the 16 bytes at column (tid % (D/8)) * 8 of rows
    tid / (D/8) + i * kRowsPerPass, i < 64 / kRowsPerPass (global row stride, shared pitch)."""
    chunks_per_row = head_dim // 8
    rows_per_pass = FWD_THREADS // chunks_per_row
    assert BLOCK_N % rows_per_pass == 0 and BLOCK_M == BLOCK_N  # the Q tile goes through it too
    seen = []
    for tid in range(FWD_THREADS):
        r0, col = tid // chunks_per_row, (tid % chunks_per_row) * 8
        seen += [(r0 + i * rows_per_pass, col) for i in range(BLOCK_N // rows_per_pass)]
    assert sorted(seen) == [(r, c) for r in range(BLOCK_N) for c in range(0, head_dim, 8)]


def reference64(q, k, v, causal, scale):
    """attention_ref's definition evaluated entirely in float64 (attention_ref takes its lse in
    float32, too coarse to tell a wrong rescale factor from rounding)."""
    scores = q @ expand_kv(k, q.shape[1]).transpose(-1, -2) * scale
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), -math.inf)
    return torch.softmax(scores, -1) @ expand_kv(v, q.shape[1]), torch.logsumexp(scores, -1)


def test_reference64_is_attention_ref(seeded):
    q, k, v = torch.randn(1, 4, 5, 16), torch.randn(1, 2, 9, 16), torch.randn(1, 2, 9, 16)
    for causal in (True, False):
        for got, want in zip(reference64(q, k, v, causal, 0.3), attention_ref(q, k, v, causal, 0.3)):
            torch.testing.assert_close(got, want)


# ---- the forward's tiling and online softmax, replayed -------------------------------------------

def lane_mask(block, limit):
    """The masked step's test, element by element through the C layout: row i of the block is
    warp i // 16, g = i % 8, r = (i % 16) // 8; key column c is j = c // 8, t4 = (c % 8) // 2,
    e & 1 = c % 2. attention_rows.cuh online_softmax: left = limit[r] - (block * 64 + t4 * 2);
    hidden iff j * 8 + (e & 1) >= left. Returns the (BLOCK_M, BLOCK_N) visibility."""
    visible = torch.zeros(BLOCK_M, BLOCK_N, dtype=torch.bool)
    for i in range(BLOCK_M):
        for c in range(BLOCK_N):
            j, t4, e1 = c // 8, (c % 8) // 2, c % 2
            visible[i, c] = not (j * 8 + e1 >= limit[i] - (block * BLOCK_N + t4 * 2))
    return visible


def forward_model(q, k, v, causal, scale):
    """attention_fwd_mma_kernel in float64 (all rows of a query block at once), in launch order."""
    batch, heads, seq_q, dim = q.shape
    seq_k = k.shape[2]
    kx, vx = expand_kv(k, heads), expand_kv(v, heads)
    # a negative scale flips Q's sign bits; the row max is of these raw scores
    q_signed = -q if scale < 0 else q
    scale_log2 = max(abs(scale) * math.log2(math.e), 2.0 ** -126)  # FLT_MIN
    diag = seq_k - seq_q
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, seq_q, dtype=q.dtype)
    n_m = (seq_q + BLOCK_M - 1) // BLOCK_M
    work = []
    for block_x in range(n_m):
        m0 = (n_m - 1 - block_x) * BLOCK_M  # last query block first
        rows = torch.arange(m0, m0 + BLOCK_M)
        q_tile = torch.zeros(batch, heads, BLOCK_M, dim, dtype=q.dtype)
        valid = rows < seq_q
        q_tile[:, :, valid] = q_signed[:, :, rows[valid]]  # rows past T zero-filled
        limit = [min(seq_k, int(row) + diag + 1) if causal else seq_k for row in rows]
        end = min(seq_k, m0 + BLOCK_M + diag) if causal else seq_k
        n_blocks = (end + BLOCK_N - 1) // BLOCK_N
        n_full = (min(seq_k, m0 + diag + 1) if causal else seq_k) // BLOCK_N
        work.append(n_blocks)
        row_max = torch.full((batch, heads, BLOCK_M), -math.inf, dtype=q.dtype)
        row_sum = torch.zeros(batch, heads, BLOCK_M, dtype=q.dtype)
        o = torch.zeros(batch, heads, BLOCK_M, dim, dtype=q.dtype)
        for block in range(n_blocks):
            keys = torch.arange(block * BLOCK_N, (block + 1) * BLOCK_N)
            k_tile = torch.zeros(batch, heads, BLOCK_N, dim, dtype=q.dtype)
            v_tile = torch.zeros_like(k_tile)
            in_range = keys < seq_k
            k_tile[:, :, in_range], v_tile[:, :, in_range] = kx[:, :, keys[in_range]], vx[:, :, keys[in_range]]
            s = q_tile @ k_tile.transpose(-1, -2)
            truth = (in_range[None, :] & ((keys[None, :] <= rows[:, None] + diag) if causal else True)
                     ).expand(BLOCK_M, BLOCK_N)
            if block < min(n_full, n_blocks):  # the unmasked step: nothing there may be hidden
                assert truth.all(), (m0, block)
            else:
                visible = lane_mask(block, limit)
                assert torch.equal(visible, truth), (m0, block)
                s = torch.where(visible, s, -math.inf)
            new_max = torch.maximum(row_max, s.amax(-1))
            assert torch.isfinite(new_max).all()  # so the kernel needs no -inf reference guard
            neg_max = -new_max * scale_log2
            alpha = torch.exp2((row_max - new_max) * scale_log2)
            p = torch.exp2(s * scale_log2 + neg_max[..., None])
            assert not p.isnan().any() and (p <= 1).all()
            row_sum = row_sum * alpha + p.sum(-1)
            o = o * alpha[..., None] + p @ v_tile
            row_max = new_max
        out[:, :, rows[valid]] = (o / row_sum[..., None])[:, :, valid]
        lse[:, :, rows[valid]] = ((row_max * scale_log2 + torch.log2(row_sum)) * math.log(2))[:, :, valid]
        # what the causal frontier skips is invisible to every row of the block
        if causal and n_blocks * BLOCK_N < seq_k:
            assert n_blocks * BLOCK_N > rows[valid].max() + diag
        # masked steps: the diagonal's (at most 2, BLOCK_M == BLOCK_N) and the ragged tail
        assert n_blocks - min(n_full, n_blocks) <= (2 if causal else 1)
    assert work == sorted(work, reverse=True)  # the heaviest query blocks launch first
    return out, lse


def test_key_block_split_is_exact_for_every_alignment():
    """attention.cu's n_full / n_blocks for every T <= 200 and S - T < 200 (all diagonal offsets
    mod 64): every key of a full block is visible to every row of the query block (padding rows
    past T included), the first masked block does hide some key of some row (the split wastes no
    unmasked block), the last block visited shows some key to a valid row, and none past it does."""
    for causal in (True, False):
        for seq_q in range(1, 201, 11):
            for seq_k in range(seq_q if causal else 1, seq_q + 200, 3):
                diag = seq_k - seq_q
                for m0 in range(0, seq_q, BLOCK_M):
                    end = min(seq_k, m0 + BLOCK_M + diag) if causal else seq_k
                    n_blocks = (end + BLOCK_N - 1) // BLOCK_N
                    n_full = min((min(seq_k, m0 + diag + 1) if causal else seq_k) // BLOCK_N, n_blocks)

                    def seen(row, key, seq_k=seq_k, causal=causal, diag=diag):
                        return key < seq_k and (not causal or key <= row + diag)
                    rows = range(m0, m0 + BLOCK_M)
                    valid_rows = range(m0, min(seq_q, m0 + BLOCK_M))
                    for block in range(max(0, n_full - 1), n_full):  # the last one binds
                        assert all(seen(r, key) for r in rows for key in range(block * BLOCK_N, (block + 1) * BLOCK_N))
                    if n_full < n_blocks:
                        keys = range(n_full * BLOCK_N, (n_full + 1) * BLOCK_N)
                        assert not all(seen(r, key) for r in rows for key in keys), (seq_q, seq_k, m0)
                    last = range((n_blocks - 1) * BLOCK_N, n_blocks * BLOCK_N)
                    assert any(seen(r, key) for r in valid_rows for key in last)
                    assert not any(seen(r, key) for r in valid_rows for key in range(n_blocks * BLOCK_N, seq_k))


# (B, H, Hkv, T, S, D): T, S off the block sizes, T = 1, T < S (bottom-right causal), T > S
# (non-causal only), GQA 4:1, a causal block whose warps' rows are all past T.
MODEL_SHAPES = [((1, 2, 2, 1, 1, 16), True), ((1, 4, 1, 7, 300, 16), True), ((2, 2, 1, 97, 97, 16), True),
                ((1, 2, 2, 130, 200, 16), True), ((1, 2, 1, 65, 64, 16), False), ((1, 4, 1, 70, 129, 16), False),
                ((1, 1, 1, 3, 130, 16), True),
                # full blocks before the diagonal; the diagonal on / off a block edge (S - T = 64, 37)
                ((1, 2, 1, 256, 256, 16), True), ((1, 2, 1, 192, 256, 16), True), ((1, 1, 1, 150, 187, 16), True),
                ((1, 2, 1, 128, 128, 16), False)]


@pytest.mark.parametrize("shape, causal", MODEL_SHAPES)
def test_forward_tiling_matches_reference(seeded, shape, causal):
    batch, heads, kv_heads, seq_q, seq_k, dim = shape
    q = torch.randn(batch, heads, seq_q, dim, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    out, lse = forward_model(q, k, v, causal, dim ** -0.5)
    want, want_lse = reference64(q, k, v, causal, dim ** -0.5)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [-0.7, 0.0, 3.0])
def test_forward_folds_any_scale_into_the_exponent(seeded, scale):
    """The row max is of raw scores with Q's sign flipped for scale < 0, so exp2(s c - m c) with
    c = |scale| log2 e never exceeds 1. c is at least FLT_MIN: with c = 0 a masked score would be
    -inf * 0 = NaN; with FLT_MIN, scale 0 still gives the mean of the visible V rows."""
    q, k, v = (torch.randn(1, 2, 70, 16, dtype=torch.float64) * 3 for _ in range(3))
    for causal in (True, False):
        out, lse = forward_model(q, k, v, causal, scale)
        want, want_lse = reference64(q, k, v, causal, scale)
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-12)
