"""Pure-PyTorch GGML Q4_0 / Q8_0: the truth that tests and benchmarks compare the kernels with.

Quantizers follow ggml's quantize_row_*_ref in fp32, operation by operation, so the bytes equal
ggml's and the gguf package's. The matmul quantizes activations to Q8_0 per 32-block like ggml
and accumulates y = sum_b isum_b * d_w[b] * d_a[b] in float64 (the kernels do it in fp32).
Arguments are validated by the public functions in fastllm.kernels.ggml, not here.
"""

from __future__ import annotations

import torch

from fastllm.kernels.ggml.formats import BLOCK, TILE_ROWS, qtype_of, tile_bytes


def _blocks(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float32).reshape(-1, BLOCK)  # (n_blocks, 32)


def _truncate_or_zero(v: torch.Tensor) -> torch.Tensor:
    # C cast / numpy astype of the finite values; the non-finite ones (1/d overflowed for a
    # block of subnormals) become 0 as on x86.
    return torch.where(torch.isfinite(v), v.trunc(), torch.zeros_like(v))


def _roundf(v: torch.Tensor) -> torch.Tensor:
    """C roundf: half away from zero (torch.round rounds half to even)."""
    t = v.trunc()
    return t + torch.where((v - t).abs() >= 0.5, v.sign(), torch.zeros_like(v))


def _fp16_bytes(d: torch.Tensor) -> torch.Tensor:
    return d.to(torch.float16).reshape(-1, 1).view(torch.uint8)  # (n_blocks, 2)


def quantize_q4_0(x: torch.Tensor) -> torch.Tensor:
    blocks = _blocks(x)
    first_max = blocks.abs().argmax(dim=-1, keepdim=True)  # the first of equal magnitudes
    d = blocks.gather(-1, first_max) / -8
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    q = _truncate_or_zero(blocks * inv + 8.5).clamp(max=15).to(torch.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    return torch.cat([_fp16_bytes(d), qs], dim=-1)


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    q, d = quantize_act(x)
    return torch.cat([_fp16_bytes(d.reshape(-1)), q.reshape(-1, BLOCK).view(torch.uint8)], dim=-1)


def quantize_act(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q8_0 of (..., K) floats: quants int8 (..., K/32, 32) and the scales d as fp32 of the fp16
    stored (..., K/32), exactly as ggml's block_q8_0 holds them."""
    blocks = _blocks(x)
    d = blocks.abs().amax(dim=-1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    v = blocks * inv
    q = torch.where(torch.isfinite(v), _roundf(v), torch.zeros_like(v)).to(torch.int8)
    shape = (*x.shape[:-1], x.shape[-1] // BLOCK)
    return q.reshape(*shape, BLOCK), d.to(torch.float16).to(torch.float32).reshape(shape)


def quantize(x: torch.Tensor, qtype: str) -> torch.Tensor:
    out = quantize_q4_0(x) if qtype == "q4_0" else quantize_q8_0(x)
    return out.reshape(*x.shape[:-1], -1)


def decode(blocks: torch.Tensor, qtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain block bytes (..., nb * type_size) -> signed quants int16 (..., nb, 32), d fp32 (..., nb)."""
    qt = qtype_of(qtype, plain_only=True)
    raw = blocks.reshape(-1, qt.type_size)
    d = raw[:, :2].contiguous().view(torch.float16).to(torch.float32)
    if qt.name == "q4_0":
        qs = raw[:, 2:].to(torch.int16)
        q = torch.cat([qs & 0x0F, qs >> 4], dim=-1) - 8
    else:
        q = raw[:, 2:].contiguous().view(torch.int8).to(torch.int16)
    nb = blocks.shape[-1] // qt.type_size
    return q.reshape(*blocks.shape[:-1], nb, BLOCK), d.reshape(*blocks.shape[:-1], nb)


def dequantize(blocks: torch.Tensor, qtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    q, d = decode(blocks, qtype)
    return (d.unsqueeze(-1) * q.to(torch.float32)).reshape(shape)


def repack(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """Plain rows (N, nb * type_size) -> x16 tiles (ceil(N/16), tile_bytes); see formats.py."""
    qt = qtype_of(qtype, plain_only=True)
    n, nb = blocks.shape[0], blocks.shape[1] // qt.type_size
    tiles = -(-n // TILE_ROWS)
    raw = blocks.reshape(n, nb, qt.type_size)
    pad = torch.zeros(tiles * TILE_ROWS - n, nb, qt.type_size, dtype=torch.uint8, device=blocks.device)
    raw = torch.cat([raw, pad]).reshape(tiles, TILE_ROWS, nb, qt.type_size)
    scales = raw[..., :2].permute(0, 2, 1, 3).reshape(tiles, nb * TILE_ROWS * 2)
    quants = raw[..., 2:]
    if qt.name == "q8_0":
        quants = quants ^ 0x80
    chunks = (qt.type_size - 2) // 4
    quants = quants.reshape(tiles, TILE_ROWS, nb, chunks, 4).permute(0, 2, 3, 1, 4).reshape(tiles, -1)
    scale_pad = tile_bytes(qtype_of(qtype + "_x16"), nb * BLOCK) - scales.shape[1] - quants.shape[1]
    padding = torch.zeros(tiles, scale_pad, dtype=torch.uint8, device=blocks.device)
    return torch.cat([scales, padding, quants], dim=1)


def unpack(packed: torch.Tensor, qtype: str, n: int, k: int) -> torch.Tensor:
    """x16 tiles -> the plain GGUF rows (n, k / 32 * type_size)."""
    qt = qtype_of(qtype, plain_only=True)
    tiles, nb, chunks = packed.shape[0], k // BLOCK, (qt.type_size - 2) // 4
    scales = packed[:, : nb * TILE_ROWS * 2].reshape(tiles, nb, TILE_ROWS, 2).permute(0, 2, 1, 3)
    quants = packed[:, packed.shape[1] - nb * qt.tile_quant_bytes:]
    quants = quants.reshape(tiles, nb, chunks, TILE_ROWS, 4).permute(0, 3, 1, 2, 4).reshape(tiles, TILE_ROWS, nb, -1)
    if qt.name == "q8_0":
        quants = quants ^ 0x80
    rows = torch.cat([scales, quants], dim=-1).reshape(tiles * TILE_ROWS, nb * qt.type_size)
    return rows[:n].contiguous()


def ggml_matmul_ref(x: torch.Tensor, weight: torch.Tensor, qtype: str, out_features: int) -> torch.Tensor:
    """y = x @ W^T with x quantized to Q8_0 per block, as ggml computes it; (..., N) in x's dtype."""
    qt = qtype_of(qtype)
    k = x.shape[-1]
    plain = unpack(weight, qt.base, out_features, k) if qt.x16 else weight
    wq, wd = decode(plain, qt.base)                      # (N, nb, 32), (N, nb)
    xq, xd = quantize_act(x.reshape(-1, k))              # (M, nb, 32), (M, nb)
    isum = torch.einsum("mbj,nbj->mnb", xq.to(torch.float64), wq.to(torch.float64))
    y = (isum * (xd.to(torch.float64)[:, None, :] * wd.to(torch.float64)[None, :, :])).sum(-1)
    return y.to(x.dtype).reshape(*x.shape[:-1], out_features)
