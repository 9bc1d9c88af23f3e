"""FlashAttention-2 backward in Triton (see ref.py for the math, triton_fwd.py for the forward).

The softmax is rebuilt tile by tile from the saved lse: P = exp2(s * log2(e) - lse * log2(e)).
With delta = rowsum(dO * O) - grad_lse (a small preprocessing kernel):

    dV = P^T dO      dP = dO V^T      dS = P * (dP - delta)      dQ = scale dS K      dK = scale dS^T Q

Two kernels, no atomics, so the result does not depend on scheduling:
  - dk/dv: grid (cdiv(S, BLOCK_N), B * Hkv). A program owns BLOCK_N keys of one kv head and loops
    over the H/Hkv query heads of its group and over the query blocks that can see those keys
    (causal: from row start_n - (S - T) on), accumulating dK and dV in registers (GQA sums here).
  - dq: grid (cdiv(T, BLOCK_M), B * H). A program owns BLOCK_M query rows and loops over the key
    blocks they see.
Each recomputes the scores it needs; that costs one extra QK^T per tile and saves the T x S
matrix. Padded rows (>= T) and keys (>= S) are masked to contribute nothing.
"""

from __future__ import annotations

import triton
import triton.language as tl

from fastllm.kernels.attention.triton_fwd import wide


@triton.jit
def attention_bwd_delta_kernel(Out, dOut, dLse, Delta, o_sb, o_sh, o_st, do_sb, do_sh, do_st,
                               n_heads, seq_q,
                               HAS_DLSE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                               BLOCK_M: tl.constexpr):
    o_st, do_st = wide(o_st), wide(do_st)
    row0 = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)
    b = bh // n_heads
    h = bh % n_heads
    rows = tl.arange(0, BLOCK_M)
    offs_m = row0 + rows
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < seq_q) & (offs_d[None, :] < HEAD_DIM)
    o_base = Out + b * o_sb + h * o_sh + row0.to(tl.int64) * o_st
    do_base = dOut + b * do_sb + h * do_sh + row0.to(tl.int64) * do_st
    o = tl.load(o_base + rows[:, None] * o_st + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(do_base + rows[:, None] * do_st + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    if HAS_DLSE:
        delta -= tl.load(dLse + bh * seq_q + offs_m, mask=offs_m < seq_q, other=0.0)
    tl.store(Delta + bh * seq_q + offs_m, delta, mask=offs_m < seq_q)


@triton.jit
def attention_bwd_dkdv_kernel(Q, K, V, dOut, Lse, Delta, dK, dV, sm_scale,
                              q_sb, q_sh, q_st, k_sb, k_sh, k_st, v_sb, v_sh, v_st,
                              do_sb, do_sh, do_st, dk_sb, dk_sh, dk_st, dv_sb, dv_sh, dv_st,
                              n_heads, kv_heads, group, seq_q, seq_k,
                              CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    q_st, k_st, v_st, do_st = wide(q_st), wide(k_st), wide(v_st), wide(do_st)
    dk_st, dv_st = wide(dk_st), wide(dv_st)
    start_n = tl.program_id(0) * BLOCK_N
    bhk = tl.program_id(1).to(tl.int64)
    b = bhk // kv_heads
    kv_head = bhk % kv_heads
    keys = tl.arange(0, BLOCK_N)
    offs_n = start_n + keys
    offs_d = tl.arange(0, BLOCK_D)
    key_ok = offs_n < seq_k
    kv_mask = key_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    n0 = start_n.to(tl.int64)  # the tile's first row (every stride is int64: wide)
    k = tl.load(K + b * k_sb + kv_head * k_sh + n0 * k_st + keys[:, None] * k_st + offs_d[None, :],
                mask=kv_mask, other=0.0)
    v = tl.load(V + b * v_sb + kv_head * v_sh + n0 * v_st + keys[:, None] * v_st + offs_d[None, :],
                mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * 1.4426950408889634
    diag = seq_k - seq_q
    first_row = tl.maximum(start_n - diag, 0) if CAUSAL else 0
    first_row = (first_row // BLOCK_M) * BLOCK_M
    rows = tl.arange(0, BLOCK_M)
    for g in range(0, group):
        h = kv_head * group + g
        bh = b * n_heads + h
        # Advanced by BLOCK_M rows per step.
        q_blk = Q + b * q_sb + h * q_sh + tl.cast(first_row, tl.int64) * q_st
        do_blk = dOut + b * do_sb + h * do_sh + tl.cast(first_row, tl.int64) * do_st
        for start_m in range(first_row, seq_q, BLOCK_M):
            offs_m = start_m + rows
            row_ok = offs_m < seq_q
            q_mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
            q = tl.load(q_blk + rows[:, None] * q_st + offs_d[None, :], mask=q_mask, other=0.0)
            do = tl.load(do_blk + rows[:, None] * do_st + offs_d[None, :], mask=q_mask, other=0.0)
            q_blk += BLOCK_M * q_st
            do_blk += BLOCK_M * do_st
            lse = tl.load(Lse + bh * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
            delta = tl.load(Delta + bh * seq_q + offs_m, mask=row_ok, other=0.0)
            s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
            visible = key_ok[:, None] & row_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_n[:, None] <= offs_m[None, :] + diag)
            p_t = tl.where(visible, tl.math.exp2(s_t - lse[None, :]), 0.0)
            dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (BLOCK_N, BLOCK_M)
            ds_t = p_t * (dp_t - delta[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    dk *= sm_scale
    tl.store(dK + b * dk_sb + kv_head * dk_sh + n0 * dk_st + keys[:, None] * dk_st + offs_d[None, :],
             dk.to(dK.dtype.element_ty), mask=kv_mask)
    tl.store(dV + b * dv_sb + kv_head * dv_sh + n0 * dv_st + keys[:, None] * dv_st + offs_d[None, :],
             dv.to(dV.dtype.element_ty), mask=kv_mask)


@triton.jit
def attention_bwd_dq_kernel(Q, K, V, dOut, Lse, Delta, dQ, sm_scale,
                            q_sb, q_sh, q_st, k_sb, k_sh, k_st, v_sb, v_sh, v_st,
                            do_sb, do_sh, do_st, dq_sb, dq_sh, dq_st,
                            n_heads, group, seq_q, seq_k,
                            CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                            BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr):
    q_st, k_st, v_st, do_st, dq_st = wide(q_st), wide(k_st), wide(v_st), wide(do_st), wide(dq_st)
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)
    b = bh // n_heads
    h = bh % n_heads
    kv_head = h // group
    rows = tl.arange(0, BLOCK_M)
    offs_m = start_m + rows
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < seq_q
    q_mask = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    m0 = start_m.to(tl.int64)  # the tile's first row (every stride is int64: wide)
    q = tl.load(Q + b * q_sb + h * q_sh + m0 * q_st + rows[:, None] * q_st + offs_d[None, :], mask=q_mask,
                other=0.0)
    do = tl.load(dOut + b * do_sb + h * do_sh + m0 * do_st + rows[:, None] * do_st + offs_d[None, :],
                 mask=q_mask, other=0.0)
    lse = tl.load(Lse + bh * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
    delta = tl.load(Delta + bh * seq_q + offs_m, mask=row_ok, other=0.0)
    k_blk = K + b * k_sb + kv_head * k_sh  # advanced by BLOCK_N keys per step
    v_blk = V + b * v_sb + kv_head * v_sh
    qk_scale = sm_scale * 1.4426950408889634
    diag = seq_k - seq_q
    end = tl.minimum(seq_k, start_m + BLOCK_M + diag) if CAUSAL else seq_k
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    keys = tl.arange(0, BLOCK_N)
    for start_n in range(0, end, BLOCK_N):
        offs_n = start_n + keys
        key_ok = offs_n < seq_k
        kv_mask = key_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
        k = tl.load(k_blk + keys[:, None] * k_st + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_blk + keys[:, None] * v_st + offs_d[None, :], mask=kv_mask, other=0.0)
        k_blk += BLOCK_N * k_st
        v_blk += BLOCK_N * v_st
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        visible = key_ok[None, :] & row_ok[:, None]
        if CAUSAL:
            visible = visible & (offs_n[None, :] <= offs_m[:, None] + diag)
        p = tl.where(visible, tl.math.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    dq *= sm_scale
    tl.store(dQ + b * dq_sb + h * dq_sh + m0 * dq_st + rows[:, None] * dq_st + offs_d[None, :],
             dq.to(dQ.dtype.element_ty), mask=q_mask)
