"""FlashAttention-2 forward in Triton (see ref.py for the math and shapes).

Grid: (cdiv(T, BLOCK_M), B * H). A program holds BLOCK_M query rows of one head in registers and
streams the keys/values of its kv head (h // (H / Hkv), GQA) BLOCK_N at a time, keeping the
running max m, the running sum l and the unnormalised output acc (online softmax, base-2
exponentials with log2(e) folded into the scale). No T x S matrix is ever stored. At the end
out = acc / l and lse = (m + log2 l) * ln 2 (natural log) is saved for the backward.

Causal masking is bottom-right aligned: query row i sees key j <= i + (S - T). Key blocks that
every row of the tile sees entirely are processed without masks; only the blocks that cross the
diagonal or the end of the keys pay for the mask. Offsets are int64: (batch, head) indices and
every row stride (`wide`), since a row times its stride passes 2^31 elements on long, batched or
strided inputs, inside one tile too once a stride exceeds 2^31 / 128; K/V pointers advance by
BLOCK_N rows per step. Tested on the CPU in the interpreter (tests/kernels/test_attention_backends.py);
benchmark: bench/bench_attention.py.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def wide(stride):
    """A stride as int64 (a stride of 1 arrives as a constexpr, which tl.cast also takes)."""
    return tl.cast(stride, tl.int64)


@triton.jit
def _fwd_block(acc, l_i, m_i, q, k_blk, v_blk, start_n, offs_m, offs_n, offs_d, seq_k, diag,
               qk_scale, k_st, v_st,
               MASKED: tl.constexpr, CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
               BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    # k_blk, v_blk point at key start_n.
    cols = start_n + offs_n
    d_ok = offs_d < HEAD_DIM
    if MASKED:
        key_ok = cols < seq_k
        k = tl.load(k_blk + offs_n[None, :] * k_st + offs_d[:, None],
                    mask=key_ok[None, :] & d_ok[:, None], other=0.0)  # (BLOCK_D, BLOCK_N)
        v = tl.load(v_blk + offs_n[:, None] * v_st + offs_d[None, :],
                    mask=key_ok[:, None] & d_ok[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
    else:
        k = tl.load(k_blk + offs_n[None, :] * k_st + offs_d[:, None], mask=d_ok[:, None], other=0.0)
        v = tl.load(v_blk + offs_n[:, None] * v_st + offs_d[None, :], mask=d_ok[None, :], other=0.0)
    s = tl.dot(q, k, input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
    if MASKED:
        visible = key_ok[None, :]
        if CAUSAL:
            visible = visible & (cols[None, :] <= offs_m[:, None] + diag)
        s = tl.where(visible, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.math.exp2(s - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def attention_fwd_kernel(Q, K, V, Out, Lse, sm_scale,
                         q_sb, q_sh, q_st, k_sb, k_sh, k_st, v_sb, v_sh, v_st, o_sb, o_sh, o_st,
                         n_heads, group, seq_q, seq_k,
                         CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    # Row strides in int64: a tile's rows times a stride (and a BLOCK_N-row pointer step) pass
    # 2^31 once a stride exceeds 2^31 / 128 elements.
    q_st, k_st, v_st, o_st = wide(q_st), wide(k_st), wide(v_st), wide(o_st)
    row0 = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)
    b = bh // n_heads
    h = bh % n_heads
    kv_head = h // group
    rows = tl.arange(0, BLOCK_M)
    offs_m = row0 + rows
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < seq_q
    q_ptrs = Q + b * q_sb + h * q_sh + row0.to(tl.int64) * q_st + rows[:, None] * q_st + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    k_blk = K + b * k_sb + kv_head * k_sh  # advanced by BLOCK_N keys per step
    v_blk = V + b * v_sb + kv_head * v_sh
    qk_scale = sm_scale * 1.4426950408889634  # log2(e): softmax in base 2
    diag = seq_k - seq_q  # query i sees keys j <= i + diag when causal

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if CAUSAL:
        # Keys up to the first row's frontier are visible to the whole tile.
        end = tl.minimum(seq_k, row0 + BLOCK_M + diag)
        n_full = tl.minimum(row0 + diag + 1, seq_k) // BLOCK_N
    else:
        end = seq_k
        n_full = seq_k // BLOCK_N
    for start_n in range(0, n_full * BLOCK_N, BLOCK_N):
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_blk, v_blk, start_n, offs_m, offs_n, offs_d,
                                   seq_k, diag, qk_scale, k_st, v_st, False, CAUSAL, HEAD_DIM, BLOCK_D,
                                   PRECISION)
        k_blk += BLOCK_N * k_st
        v_blk += BLOCK_N * v_st
    for start_n in range(n_full * BLOCK_N, end, BLOCK_N):
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_blk, v_blk, start_n, offs_m, offs_n, offs_d,
                                   seq_k, diag, qk_scale, k_st, v_st, True, CAUSAL, HEAD_DIM, BLOCK_D,
                                   PRECISION)
        k_blk += BLOCK_N * k_st
        v_blk += BLOCK_N * v_st

    out = acc / l_i[:, None]
    o_ptrs = Out + b * o_sb + h * o_sh + row0.to(tl.int64) * o_st + rows[:, None] * o_st + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))
    lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # natural log
    tl.store(Lse + bh * seq_q + offs_m, lse, mask=row_ok)
