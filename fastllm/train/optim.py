"""AdamW with the usual LLM parameter groups: weight decay on weight matrices of the blocks
(and an untied output head), none on norms, biases or the embedding table."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from fastllm.train.config import OptimSection


def decays(name: str, param: torch.Tensor) -> bool:
    return param.ndim >= 2 and "embed_tokens" not in name


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    seen: set[int] = set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # tied parameters are yielded once, first name
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if decays(name, param) else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, optim: OptimSection, device: torch.device) -> torch.optim.AdamW:
    groups = param_groups(model, optim.weight_decay)
    kwargs = dict(lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps)
    if optim.fused and _fused_supported(device):
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    return torch.optim.AdamW(groups, foreach=device.type == "cuda", **kwargs)


def _fused_supported(device: torch.device) -> bool:
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    # torch >= 2.4 has fused AdamW on CPU and CUDA.
    return device.type in ("cuda", "cpu") and tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 4)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
