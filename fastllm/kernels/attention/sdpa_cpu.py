"""The reference backend's fast path on the CPU: torch's fused flash-attention CPU kernels
(`aten::_scaled_dot_product_flash_attention_for_cpu` and its backward), which also return and
consume the log-sum-exp. Same semantics as ref.py, float32 math: inputs are upcast, GQA kv heads
are taken natively, and causal decoding alignment (T != S) is given as an explicit bottom-right
mask, since the kernel's own is_causal aligns top-left.
Several times faster than materialising the (T, S) matrix on a CPU; training on a CPU uses it.
"""

from __future__ import annotations

import torch

from fastllm.kernels.attention.ref import causal_mask


def available(q: torch.Tensor) -> bool:
    """Whether the fused kernels can take q: a CPU tensor with at least one query (torch's kernel
    dies of a division by zero, SIGFPE, on T = 0), in a torch that has them."""
    return (q.device.type == "cpu" and q.shape[2] > 0
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"))


def _prepare(q, k, v, causal):
    """float32 inputs (GQA kv heads as they are: the kernels map head h to h // (H / Hkv)) and
    the mask arguments for bottom-right causal alignment."""
    qf, kf, vf = q.float(), k.float(), v.float()
    seq_q, seq_k = q.shape[2], k.shape[2]
    if not causal or seq_q == 1:  # one query is the last position: it sees every key
        return qf, kf, vf, False, None
    if seq_q == seq_k:
        return qf, kf, vf, True, None
    allowed = causal_mask(seq_q, seq_k, q.device)
    mask = torch.zeros(seq_q, seq_k, device=q.device).masked_fill(~allowed, float("-inf"))
    return qf, kf, vf, False, mask


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
            scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    qf, kf, vf, is_causal, mask = _prepare(q, k, v, causal)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        qf, kf, vf, 0.0, is_causal, attn_mask=mask, scale=scale)
    return out.to(q.dtype).contiguous(), lse.contiguous()


def backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
             lse: torch.Tensor, causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    qf, kf, vf, is_causal, mask = _prepare(q, k, v, causal)
    dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out.float(), qf, kf, vf, out.float(), lse, 0.0, is_causal, attn_mask=mask, scale=scale)
    return dq.to(q.dtype).contiguous(), dk.to(k.dtype).contiguous(), dv.to(v.dtype).contiguous()

