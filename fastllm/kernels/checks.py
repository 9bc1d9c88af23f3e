"""Argument checks at the kernel boundary: terse, named, one line each (flash-attention style).

Native and Triton kernels trust what they are given; these checks are what stands between a
wrong call and an out-of-bounds read, so every kernel op runs them before any pointer leaves Python.
"""

from __future__ import annotations

import contextlib

import torch

from fastllm.utils.errors import KernelInputError

LOW_PRECISION = (torch.float16, torch.bfloat16)
FLOAT_DTYPES = (torch.float32, *LOW_PRECISION)


def fail(op: str, message: str) -> None:
    raise KernelInputError(f"{op}: {message}")


def check_rank(op: str, name: str, t: torch.Tensor, layout: str) -> None:
    if not isinstance(t, torch.Tensor):
        fail(op, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    rank = len(layout.split(","))
    if t.dim() != rank:
        fail(op, f"{name} must be a {rank}-d tensor ({layout}), got shape {tuple(t.shape)}")


def check_float(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        fail(op, f"{name} has dtype {t.dtype}; expected float32, float16 or bfloat16")


def check_same_dtype(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        fail(op, f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; they must match")


def check_same_device(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        fail(op, f"{name} is on {t.device} but {ref_name} is on {ref.device}; move them to one device")


def check_last_dim_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    # An empty tensor has nothing to read; autograd hands those out with all strides 0.
    if t.size(-1) > 1 and t.stride(-1) != 1 and t.numel():
        fail(op, f"{name} needs a contiguous last dimension (stride {t.stride(-1)}); call .contiguous()")


def check_one_device(op: str, **tensors: torch.Tensor | None) -> torch.device:
    """The device every given tensor is on (None entries are skipped); the first tensor on
    another device than the first one's is named in the error. Launchers call it before
    handing pointers to a kernel, which would read another device's addresses as its own."""
    first_name, device = None, None
    for name, t in tensors.items():
        if t is None:
            continue
        if device is None:
            first_name, device = name, t.device
        elif t.device != device:
            fail(op, f"{name} is on {t.device} but {first_name} is on {device}; move them to one device")
    if device is None:
        raise ValueError("check_one_device needs at least one tensor")
    return device


def on_device(device: torch.device):
    """Makes `device` the current CUDA device for a launch (Triton launches on the current
    device and stream, not the tensors'); a no-op context for CPU tensors (the interpreter) and
    when the device is already current (the usual case: no device switch on the host path)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


# The raw cudaStream_t of a device's current stream (an int), without building a Stream object;
# torch's CPU builds lack the fast accessor.
raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
    lambda index: torch.cuda.current_stream(index).cuda_stream)
