"""Scaled dot-product attention, pure PyTorch: the truth every attention kernel is tested against.

    q (B, H, T, D), k, v (B, Hkv, S, D), Hkv divides H: query head h reads kv head h // (H/Hkv)
    s[i, j] = scale * q_i . k_j                      scale defaults to D**-0.5
    causal: query i sees keys j <= i + S - T          (bottom-right aligned, like flash-attn;
                                                      T <= S, so every query sees a key)
    lse[i]  = log sum_j exp(s[i, j])                  (B, H, T) float32, natural log
    out[i]  = sum_j exp(s[i, j] - lse[i]) v_j         (B, H, T, D), q's dtype

The kernels return (out, lse): the backward needs lse to rebuild the softmax without storing it.
The math runs in float32 (`upcast=False` runs it in the input dtype: the low-precision reference
of the flash-attention tolerance rule). `attention_ref` is the truth tests compare against; the
dispatcher's `ref` backend runs the same math through torch's fused kernels on a CPU (sdpa_cpu.py).
"""

from __future__ import annotations

import torch


def expand_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, H, S, D), each kv head repeated for its H/Hkv query heads."""
    batch, kv_heads, seq, dim = x.shape
    if kv_heads == n_heads:
        return x
    # expand + reshape copies once; much faster than repeat_interleave on a CPU
    return x[:, :, None].expand(batch, kv_heads, n_heads // kv_heads, seq, dim).reshape(batch, n_heads, seq, dim)


def causal_mask(seq_q: int, seq_k: int, device: torch.device) -> torch.Tensor:
    """(T, S) bool, True where query i may see key j (j <= i + S - T)."""
    rows = torch.arange(seq_q, device=device).unsqueeze(1)
    cols = torch.arange(seq_k, device=device).unsqueeze(0)
    return cols <= rows + (seq_k - seq_q)


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                  scale: float | None = None, upcast: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) by the definition above, materialising the (T, S) score matrix."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    compute = torch.promote_types(q.dtype, torch.float32) if upcast else q.dtype
    qc = q.to(compute)
    kc = expand_kv(k.to(compute), q.shape[1])
    vc = expand_kv(v.to(compute), q.shape[1])
    scores = torch.matmul(qc, kc.transpose(-1, -2)) * scale  # (B, H, T, S)
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
    lse = torch.logsumexp(scores.to(torch.promote_types(compute, torch.float32)), dim=-1)  # (B, H, T)
    probs = torch.exp(scores - lse.to(compute).unsqueeze(-1))
    out = torch.matmul(probs, vc)  # (B, H, T, D)
    return out.to(q.dtype), lse


def attention_ref_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                          scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The dispatcher's `ref` forward: (out, lse); torch's fused CPU kernel on a CPU (sdpa_cpu.py)."""
    from fastllm.kernels.attention import sdpa_cpu

    if sdpa_cpu.available(q):
        return sdpa_cpu.forward(q, k, v, causal, scale)
    out, lse = attention_ref(q, k, v, causal, scale)
    return out, lse.contiguous()


def attention_ref_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           out: torch.Tensor, lse: torch.Tensor, grad_lse: torch.Tensor | None,
                           causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dispatcher's `ref` backward: torch's fused CPU kernel on a CPU, else the formulas."""
    from fastllm.kernels.attention import sdpa_cpu

    if grad_lse is None and sdpa_cpu.available(q):
        return sdpa_cpu.backward(grad_out, q, k, v, out, lse, causal, scale)
    return attention_ref_grads(grad_out, q, k, v, grad_lse, causal, scale)


def attention_ref_grads(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        grad_lse: torch.Tensor | None, causal: bool,
                        scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) by the softmax-gradient formulas, in fp32 (the softmax is recomputed).

    With P = exp(s - lse): dV = P^T dO, dP = dO V^T, dS = P * (dP - delta) where
    delta = rowsum(dO * O) - grad_lse, dQ = scale dS K, dK = scale dS^T Q (GQA heads summed).
    (Autograd cannot be used here: op bodies run below the autograd dispatch key.)
    """
    heads = q.shape[1]
    qf, dof = q.float(), grad_out.float()
    kf, vf = expand_kv(k.float(), heads), expand_kv(v.float(), heads)
    out_f, lse_f = attention_ref(qf, kf, vf, causal, scale)  # recomputed: exact fp32 softmax
    scores = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    if causal:
        scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
    probs = torch.exp(scores - lse_f.unsqueeze(-1))  # (B, H, T, S)
    delta = (dof * out_f).sum(-1)
    if grad_lse is not None:
        delta = delta - grad_lse.float()
    grad_scores = probs * (torch.matmul(dof, vf.transpose(-1, -2)) - delta.unsqueeze(-1))
    dq = torch.matmul(grad_scores, kf) * scale
    dk = sum_groups(torch.matmul(grad_scores.transpose(-1, -2), qf) * scale, k.shape[1])
    dv = sum_groups(torch.matmul(probs.transpose(-1, -2), dof), k.shape[1])
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def sum_groups(x: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """(B, H, S, D) -> (B, Hkv, S, D), summing the query heads that share a kv head."""
    batch, heads, seq, dim = x.shape
    return x.view(batch, kv_heads, heads // kv_heads, seq, dim).sum(2)
