"""CPU models of the index math in csrc/cuda/attention.cu and attention_decode.cu.

No GPU runs these kernels in CI, so what can be checked without one is checked here:

- Fragment layouts. The PTX ISA tables for mma.m16n8k16 (16-bit A and B, fp32 C) and for
  ldmatrix.x4 (plain and .trans) are written out below from the ISA text, independently of the
  kernel; the kernel's ldmatrix row addresses and register uses (mirrored from attention.cu, the
  line is named at each) must hand every mma exactly the elements its operand layout asks for,
  and the S accumulators re-packed as P must form P's A fragment.
- Shared memory. With the kernel's pitch (read from attention.cu) the 8 rows of every ldmatrix
  phase fall in distinct banks, and every cp.async / ldmatrix address is 16-byte aligned.
- Tiling and online softmax. The kernel's loop (query and key blocks read from the source, the
  causal frontier, the -inf reference, base-2 exponentials, lse) replayed in float64 on tiny
  shapes matches attention_ref; blocks the kernel skips hold no visible key.
- Decoding. split_plan never makes an empty split, and the split kernel's per-team partials merged
  as the kernel merges them (teams with no key weigh 0), then combined, match attention_ref.

These models check the kernels' design and index expressions, not the compiled code: a change to
an expression in the .cu files needs the matching change here (constants are read from source).
"""

import math
import re
from pathlib import Path

import pytest
import torch

from fastllm.kernels.attention.cuda import split_plan
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
DEC_THREADS = _constant("attention_decode.cu", r"constexpr int kThreads = (\d+);")
DEC_GROUP = _constant("attention_decode.cu", r"constexpr int kMaxGroup = (\d+);")


# ---- the PTX ISA's tables (mma.m16n8k16 .f16/.bf16 inputs, .f32 accumulators; ldmatrix) -----

def ptx_a(lane, i):
    """(row, col) of element a_i (i in 0..7) of the 16 x 16 A operand held by `lane`."""
    group, tig = lane >> 2, lane % 4
    row = group + 8 if i in (2, 3, 6, 7) else group
    col = tig * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def ptx_b(lane, i):
    """(row k, col n) of element b_i (i in 0..3) of the 16 x 8 B operand held by `lane`."""
    group, tig = lane >> 2, lane % 4
    return tig * 2 + (i & 1) + (8 if i >= 2 else 0), group


def ptx_c(lane, i):
    """(row, col) of accumulator c_i (i in 0..3) of the 16 x 8 C/D held by `lane`."""
    group, tig = lane >> 2, lane % 4
    return group + (8 if i >= 2 else 0), tig * 2 + (i & 1)


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


@pytest.mark.parametrize("head_dim", [64, 128])
def test_k_fragments_are_the_b_operand_of_q_kt(head_dim):
    """attention.cu, S = Q K^T: key = (j + (ld_mat>>1))*8 + ld_row, col = kk*16 + (ld_mat&1)*8;
    registers 0-1 feed n-tile j, 2-3 n-tile j+1. B[k][n] = K[key n][d k], K row-major in smem."""
    for kk in range(head_dim // 16):
        for j in range(0, BLOCK_N // 8, 2):
            addresses = []
            for lane in range(32):
                ld_row, ld_mat = _ld_lane(lane)
                addresses.append(((j + (ld_mat >> 1)) * 8 + ld_row, kk * 16 + (ld_mat & 1) * 8))
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
    """attention.cu, O += P V: key = kk*16 + (ld_mat&1)*8 + ld_row, col = (dn + (ld_mat>>1))*8,
    read with .trans; registers 0-1 feed d-tile dn, 2-3 d-tile dn+1. B[k][n] = V[key k][d n]."""
    for kk in range(BLOCK_N // 16):
        for dn in range(0, head_dim // 8, 2):
            addresses = []
            for lane in range(32):
                ld_row, ld_mat = _ld_lane(lane)
                addresses.append((kk * 16 + (ld_mat & 1) * 8 + ld_row, (dn + (ld_mat >> 1)) * 8))
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
    """attention.cu: key = n0 + j*8 + t4*2 + (e&1) against row rows[e>>1] = g + 8*(e>>1); the
    store writes o[dn][2r], o[dn][2r+1] to row g + 8r, columns dn*8 + t4*2 (+1)."""
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
    assert 2 * 2 * tile_bytes <= 227 * 1024  # two stages of K and V: fits an sm_90 block
    for row0 in range(0, BLOCK_N, 8):
        for col in range(0, head_dim, 8):
            banks = []
            for r in range(8):
                address = ((row0 + r) * pitch + col) * 2
                assert address % 16 == 0
                banks += [(address // 4 + w) % 32 for w in range(4)]
            assert sorted(banks) == list(range(32)), (head_dim, row0, col)


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

def forward_model(q, k, v, causal, scale):
    """The loop of attention_fwd_mma_kernel in float64 (all rows of a query block at once)."""
    batch, heads, seq_q, dim = q.shape
    seq_k = k.shape[2]
    kx, vx = expand_kv(k, heads), expand_kv(v, heads)
    scale_log2 = scale * math.log2(math.e)
    diag = seq_k - seq_q
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, seq_q, dtype=q.dtype)
    for m0 in range(0, seq_q, BLOCK_M):
        rows = torch.arange(m0, m0 + BLOCK_M)
        q_tile = torch.zeros(batch, heads, BLOCK_M, dim, dtype=q.dtype)
        valid = rows < seq_q
        q_tile[:, :, valid] = q[:, :, rows[valid]]  # rows past T zero-filled
        end = min(seq_k, m0 + BLOCK_M + diag) if causal else seq_k
        n_blocks = (end + BLOCK_N - 1) // BLOCK_N
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
            visible = in_range[None, :] & ((keys[None, :] <= rows[:, None] + diag) if causal else True)
            s = torch.where(visible, s * scale_log2, -math.inf)
            new_max = torch.maximum(row_max, s.amax(-1))
            reference = torch.where(new_max == -math.inf, 0.0, new_max)
            alpha = torch.exp2(row_max - reference)
            p = torch.exp2(s - reference[..., None])
            row_sum = row_sum * alpha + p.sum(-1)
            o = o * alpha[..., None] + p @ v_tile
            row_max = new_max
        out[:, :, rows[valid]] = (o / row_sum[..., None])[:, :, valid]
        lse[:, :, rows[valid]] = ((row_max + torch.log2(row_sum)) * math.log(2))[:, :, valid]
        # what the causal frontier skips is invisible to every row of the block
        if causal and n_blocks * BLOCK_N < seq_k:
            assert n_blocks * BLOCK_N > rows[valid].max() + diag
    return out, lse


# (B, H, Hkv, T, S, D): T, S off the block sizes, T = 1, T < S (bottom-right causal), T > S
# (non-causal only), GQA 4:1, a causal block whose warps' rows are all past T.
MODEL_SHAPES = [((1, 2, 2, 1, 1, 16), True), ((1, 4, 1, 7, 300, 16), True), ((2, 2, 1, 97, 97, 16), True),
                ((1, 2, 2, 130, 200, 16), True), ((1, 2, 1, 65, 64, 16), False), ((1, 4, 1, 70, 129, 16), False),
                ((1, 1, 1, 3, 130, 16), True)]


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


# ---- decoding ----------------------------------------------------------------------------------

def test_split_plan_never_leaves_a_split_empty():
    for batch in (1, 3, 64):
        for kv_heads, group in ((1, 1), (2, 4), (8, 4), (1, 32), (3, 12)):
            for seq_k in (1, 2, 63, 64, 65, 77, 1000, 4097, 32768):
                for sms in (1, 108, 132):
                    n_splits, per_split = split_plan(batch, kv_heads, group, seq_k, sms)
                    assert n_splits >= 1 and per_split >= 1
                    assert n_splits * per_split >= seq_k  # every key in some split
                    assert (n_splits - 1) * per_split < seq_k  # attention_decode_cuda's condition


def decode_model(q, k, v, scale, n_splits, per_split):
    """attention_decode_split_kernel + combine in float64: teams of D/8 threads take keys
    begin + team, begin + team + n_teams, ...; a block merges its teams, the combine its splits."""
    batch, heads, _, dim = q.shape
    seq_k = k.shape[2]
    teams = DEC_THREADS // (dim // 8)
    kx, vx = expand_kv(k, heads), expand_kv(v, heads)
    scale_log2 = scale * math.log2(math.e)
    s_all = (q @ kx.transpose(-1, -2))[:, :, 0] * scale_log2  # (B, H, S)
    part_max, part_sum, part_out = [], [], []
    for split in range(n_splits):
        begin, end = split * per_split, min(seq_k, (split + 1) * per_split)
        t_max, t_sum, t_acc = [], [], []
        for team in range(teams):
            keys = torch.tensor(range(begin + team, end, teams), dtype=torch.long)
            if len(keys) == 0:  # a team past the chunk keeps m = -inf, l = 0, acc = 0
                t_max.append(torch.full((batch, heads), -math.inf, dtype=q.dtype))
                t_sum.append(torch.zeros(batch, heads, dtype=q.dtype))
                t_acc.append(torch.zeros(batch, heads, dim, dtype=q.dtype))
                continue
            s = s_all[:, :, keys]
            m = s.amax(-1)
            p = torch.exp2(s - m[..., None])
            t_max.append(m)
            t_sum.append(p.sum(-1))
            t_acc.append(torch.einsum("bhk,bhkd->bhd", p, vx[:, :, keys]))
        t_max, t_sum, t_acc = torch.stack(t_max), torch.stack(t_sum), torch.stack(t_acc)
        block_max = t_max.amax(0)
        weight = torch.where(t_max == -math.inf, 0.0, torch.exp2(t_max - block_max))
        part_max.append(block_max)
        part_sum.append((t_sum * weight).sum(0))
        part_out.append((t_acc * weight[..., None]).sum(0))
    part_max, part_sum, part_out = torch.stack(part_max), torch.stack(part_sum), torch.stack(part_out)
    assert torch.isfinite(part_max).all()  # no split without a key
    global_max = part_max.amax(0)
    w = torch.exp2(part_max - global_max)
    total = (part_sum * w).sum(0)
    out = (part_out * w[..., None]).sum(0) / total[..., None]
    lse = (global_max + torch.log2(total)) * math.log(2)
    return out[:, :, None], lse[:, :, None]


@pytest.mark.parametrize("shape, sms", [((1, 16, 1, 4097, 64), 132), ((2, 32, 8, 300, 128), 132),
                                        ((3, 12, 3, 77, 128), 108), ((1, 2, 2, 1, 64), 132),
                                        ((1, 20, 2, 130, 64), 1)])
def test_decode_splits_and_combine_match_reference(seeded, shape, sms):
    batch, heads, kv_heads, seq_k, dim = shape
    group = heads // kv_heads
    chunks = -(-group // DEC_GROUP)
    q = torch.randn(batch, heads, 1, dim, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, seq_k, dim, dtype=torch.float64)
    n_splits, per_split = split_plan(batch, kv_heads, group, seq_k, sms)
    # every query head is served by exactly one (kv head, chunk) block: heads kv*G + c*8 + i
    served = sorted(kv * group + c * DEC_GROUP + i for kv in range(kv_heads) for c in range(chunks)
                    for i in range(min(DEC_GROUP, group - c * DEC_GROUP)))
    assert served == list(range(heads))
    out, lse = decode_model(q, k, v, dim ** -0.5, n_splits, per_split)
    want, want_lse = reference64(q, k, v, True, dim ** -0.5)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=1e-12, atol=1e-12)
