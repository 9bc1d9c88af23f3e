"""torch.distributed plumbing for training under torchrun: process group (NCCL on GPUs, gloo on
CPUs), DDP or FSDP2 (`fully_shard` per block, then the root) wrapping, full-state checkpoint I/O
for either, and small collectives. Without torchrun everything degrades to one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from fastllm.utils.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for a `device` option (auto, cpu, cuda, cuda:N); one that this machine
    does not have is a ConfigError."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: torch sees {torch.cuda.device_count()} GPU(s) here; "
                              "use device=auto or cpu")
    return device


def setup(device_name: str) -> Dist:
    """Joins the torchrun process group if launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world_size, local_rank, device)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        # Every process finishes its collectives before any tears the group down; a gloo group
        # destroyed while a peer still talks to it can abort at interpreter exit.
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, mode: str) -> nn.Module:
    """DDP, or FSDP2 with each block and then the whole model sharded; identity on one process."""
    if not d.enabled:
        return model
    if mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(d.device.type, (d.world_size,))
        for block in model.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


class no_grad_sync:
    """Skips the gradient all-reduce for accumulation micro-steps (DDP no_sync / FSDP2 flag)."""

    def __init__(self, model: nn.Module, skip: bool):
        self.model, self.skip, self.inner = model, skip, None

    def __enter__(self):
        if self.skip and hasattr(self.model, "no_sync"):
            self.inner = self.model.no_sync()
            self.inner.__enter__()
        elif hasattr(self.model, "set_requires_gradient_sync"):
            self.model.set_requires_gradient_sync(not self.skip)
        return self

    def __exit__(self, *exc):
        if self.inner is not None:
            self.inner.__exit__(*exc)
        return False


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts on CPU, keyed by parameter name (complete on rank 0)."""
    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict) -> None:
    """Every process loads the same full state; FSDP2 shards it, DDP copies it."""
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                   options=StateDictOptions(full_state_dict=True))


def all_reduce_mean(value: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= d.world_size
    return value


def all_reduce_sum(value: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_gather_objects(obj, d: Dist) -> list:
    """Small JSON-like values from every process (in-memory only; nothing is written with pickle)."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()
