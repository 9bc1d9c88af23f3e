"""The `cuda` attention backend: launchers over fastllm._C_cuda.attention.

Forward: a tensor-core FlashAttention kernel, or for one query per sequence (T == 1, generation
with a KV cache) the split-KV decoding kernel (csrc/cuda/attention_decode.cu), whose partial
softmaxes are merged on the GPU. Forward kernels: "mma" (mma.sync, sm_80+, csrc/cuda/attention.cu)
and "wgmma" / "wgmma64" (Hopper warpgroup MMA with 128- / 64-row tiles, sm_90 only,
csrc/cuda/attention_wgmma.cu); forward_kernel() picks one, FASTLLM_CUDA_ATTENTION forces it.
Backward: the Triton FlashAttention-2 backward (triton_bwd.py); it reads the same lse layout.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from fastllm import _ext
from fastllm.kernels.checks import check_one_device, on_device, raw_stream
from fastllm.utils.errors import BackendUnavailableError, ConfigError

HEAD_DIMS = (64, 128)
DTYPE_CODES = {torch.float16: 1, torch.bfloat16: 2}
# Decoding (csrc/cuda/attention_decode.cu). A split-kernel block serves one kv head and up to
# DECODE_GROUP of its query heads and takes BLOCK_KEYS keys per step (4 warps x 16); its
# __launch_bounds__ guarantee BLOCKS_PER_SM blocks per multiprocessor (kMinBlocks there).
DECODE_GROUP = 8
BLOCK_KEYS = 64
BLOCKS_PER_SM = 3
MIN_KEYS_PER_SPLIT = 256  # a split's partial (<= 8 x D floats) stays small next to its K and V
MAX_SPLITS = 1024
WAVE_EFFICIENCY = 0.95  # fewest splits whose last wave of blocks is nearly as full as the best
FORWARD_KERNELS = {"mma": 1, "wgmma": 2, "wgmma64": 3}  # the kernel codes of fastllm._C_cuda.attention.forward
WGMMA_KERNELS = ("wgmma", "wgmma64")
# The forward the automatic choice takes on Hopper (H100 / H200): the wgmma kernel that passed the
# GPU suite there and outran the mma.sync one at every length and head dim (bench/RESULTS.md).
HOPPER_FORWARD: str | None = "wgmma64"
# Head dims whose prefill (T > 1) the automatic choice sends to that kernel instead of Triton
# (op.py): where it outran the Triton forward. H200, bf16 causal: head dim 128 1.05-1.14x Triton
# at 1K-16K tokens; head dim 64 1.24x at 1K but 0.98x at 4K-16K, so 64 stays with Triton.
HOPPER_PREFILL_HEAD_DIMS: tuple[int, ...] = (128,)


def unsupported_reason(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str | None:
    """Why the CUDA kernels cannot take these tensors, or None."""
    if q.dtype not in DTYPE_CODES:
        return f"the cuda kernels take float16 or bfloat16, got {q.dtype} (the triton backend takes float32)"
    if q.shape[-1] not in HEAD_DIMS:
        return f"q has head dim {q.shape[-1]}, which the cuda kernels do not take (supported: {HEAD_DIMS})"
    if _capability(q.device) < (8, 0):
        return "the cuda kernels need tensor cores of compute capability 8.0 or newer"
    if q.shape[0] * q.shape[1] > 65535:
        return f"batch * heads = {q.shape[0] * q.shape[1]} exceeds 65535"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if any(s % 8 for s in t.stride()[:3]) or t.data_ptr() % 16:
            return f"{name}'s strides {t.stride()} or address are not 16-byte aligned; call .contiguous()"
    return None


@functools.cache
def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def forward_kernel(device: torch.device) -> str:
    """The forward kernel for T > 1 on `device`: FASTLLM_CUDA_ATTENTION (auto, mma, wgmma or
    wgmma64) or, for auto, hopper_forward(device) or else mma."""
    choice = os.environ.get("FASTLLM_CUDA_ATTENTION", "auto") or "auto"
    if choice == "auto":
        return hopper_forward(device) or "mma"
    if choice not in FORWARD_KERNELS:
        raise ConfigError(f"FASTLLM_CUDA_ATTENTION={choice!r}: expected auto, {', '.join(FORWARD_KERNELS)}")
    if choice in WGMMA_KERNELS and (reason := wgmma_unavailable_reason(device)):
        raise BackendUnavailableError(f"FASTLLM_CUDA_ATTENTION={choice}: {reason}")
    return choice


def hopper_forward(device: torch.device) -> str | None:
    """The wgmma kernel the automatic choice takes on `device` (HOPPER_FORWARD where wgmma runs)."""
    return HOPPER_FORWARD if HOPPER_FORWARD and wgmma_unavailable_reason(device) is None else None


def prefers_cuda_prefill(device: torch.device, head_dim: int) -> bool:
    """Whether the automatic choice keeps prefill of this head dim on cuda (its wgmma forward)."""
    return head_dim in HOPPER_PREFILL_HEAD_DIMS and hopper_forward(device) is not None


@functools.cache
def wgmma_unavailable_reason(device: torch.device) -> str | None:
    """Why the wgmma forward cannot run on `device`, or None."""
    if _capability(device) != (9, 0):
        return f"the wgmma kernels run on compute capability 9.0 (H100 / H200), {device} has {_capability(device)}"
    if not _ext.cuda().attention.wgmma_compiled():
        return "this build has no sm_90a kernels (FASTLLM_CUDA_ARCHS did not include 90)"
    return None


def _strides(t: torch.Tensor) -> list[int]:
    return [t.stride(0), t.stride(1), t.stride(2)]


def decode_splits(batch: int, kv_heads: int, group: int, seq_k: int, device: torch.device) -> tuple[int, int]:
    """(n_splits, keys_per_split) so the grid fills the GPU and no split is empty."""
    return split_plan(batch, kv_heads, group, seq_k, _multiprocessors(device))


@functools.cache
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


@functools.lru_cache(maxsize=4096)
def split_plan(batch: int, kv_heads: int, group: int, seq_k: int, sms: int) -> tuple[int, int]:
    """decode_splits for a GPU with `sms` multiprocessors. The split kernel's grid is
    (n_splits, batch * kv_heads * cdiv(group, 8)) and BLOCKS_PER_SM * sms blocks run at once; a
    grid of w waves of those runs about as long as ceil(w) full ones, so n_splits is the fewest
    (each >= MIN_KEYS_PER_SPLIT keys) whose w / ceil(w) is within WAVE_EFFICIENCY of the best.
    keys_per_split is a multiple of BLOCK_KEYS (whole steps for every warp but in the last split),
    and the last split holds at least one key."""
    blocks = batch * kv_heads * math.ceil(group / DECODE_GROUP)
    slots = BLOCKS_PER_SM * sms
    most = max(1, min(MAX_SPLITS, seq_k // MIN_KEYS_PER_SPLIT))

    def efficiency(n: int) -> float:
        waves = blocks * n / slots
        return waves / math.ceil(waves)

    best = max(efficiency(n) for n in range(1, most + 1))
    n_splits = next(n for n in range(1, most + 1) if efficiency(n) >= WAVE_EFFICIENCY * best)
    keys_per_split = math.ceil(math.ceil(seq_k / n_splits) / BLOCK_KEYS) * BLOCK_KEYS
    return math.ceil(seq_k / keys_per_split), keys_per_split


def attention_cuda_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                           scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """out, lse; one query per sequence decodes with the split-KV kernel, longer queries run
    forward_kernel()'s choice."""
    device = check_one_device("attention", q=q, k=k, v=v)
    batch, heads, seq_q, head_dim = q.shape
    kv_heads, seq_k = k.shape[1], k.shape[2]
    out = torch.empty((batch, heads, seq_q, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, seq_q), dtype=torch.float32, device=q.device)
    if out.numel() == 0:  # a grid with a zero dimension is an invalid launch
        return out, lse
    module = _ext.cuda().attention
    common = (DTYPE_CODES[q.dtype], q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr(),
              _strides(q), _strides(k), _strides(v), _strides(out), batch, heads, kv_heads)
    with on_device(device):
        stream = raw_stream(device.index)
        if seq_q == 1:
            n_splits, per_split = decode_splits(batch, kv_heads, heads // kv_heads, seq_k, q.device)
            # one workspace: partial_out (n_splits, B*H, D), then partial_max and partial_sum (n_splits, B*H)
            rows = n_splits * batch * heads
            work = torch.empty(rows * (head_dim + 2), dtype=torch.float32, device=q.device)
            base, size = work.data_ptr(), work.element_size()
            module.decode(*common, seq_k, head_dim, scale, base, base + rows * head_dim * size,
                          base + rows * (head_dim + 1) * size, n_splits, per_split, stream)
        else:
            kernel = FORWARD_KERNELS[forward_kernel(q.device)]
            module.forward(*common, seq_q, seq_k, head_dim, scale, causal, stream, kernel)
    return out, lse


def attention_cuda_backward(*args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The CUDA module has no backward kernel: the Triton one consumes the same (out, lse).
    Imported here, not at the top, so inference with the CUDA forward needs no triton."""
    try:
        from fastllm.kernels.attention.triton import attention_triton_backward
    except ImportError as exc:
        raise BackendUnavailableError(f"attention: the cuda backend's backward is the Triton kernel and "
                                      f"triton cannot be imported ({exc}); pip install triton") from None
    return attention_triton_backward(*args)
