"""Every random generator a training process uses (torch CPU and CUDA, numpy's global, Python's),
captured as arrays and JSON values so checkpoints need no pickle, and restored exactly."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """This process's generator states as JSON-friendly lists (sent between processes, then stored)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch_cpu": torch.get_rng_state().tolist(),
        "torch_cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"keys": np_state[1].tolist(), "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def to_storage(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Per-rank states -> (tensors for rng.safetensors, JSON for state.json)."""
    tensors, json_part = {}, []
    for rank, state in enumerate(states):
        tensors[f"rank{rank}.torch_cpu"] = torch.tensor(state["torch_cpu"], dtype=torch.uint8)
        for i, cuda_state in enumerate(state["torch_cuda"]):
            tensors[f"rank{rank}.torch_cuda{i}"] = torch.tensor(cuda_state, dtype=torch.uint8)
        tensors[f"rank{rank}.numpy_keys"] = torch.tensor(state["numpy"]["keys"], dtype=torch.int64)
        json_part.append({"cuda_devices": len(state["torch_cuda"]),
                          "numpy": {k: v for k, v in state["numpy"].items() if k != "keys"},
                          "python": state["python"]})
    return tensors, json_part


def restore(rank: int, tensors: dict[str, torch.Tensor], json_part: list[dict[str, Any]]) -> None:
    """Sets this process's generators to what rank `rank` saved."""
    saved = json_part[rank]
    torch.set_rng_state(tensors[f"rank{rank}.torch_cpu"])
    if torch.cuda.is_available() and saved["cuda_devices"] == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[f"rank{rank}.torch_cuda{i}"] for i in range(saved["cuda_devices"])])
    numpy_state = saved["numpy"]
    keys = tensors[f"rank{rank}.numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy_state["pos"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
