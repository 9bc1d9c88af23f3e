"""Training observability: metrics.jsonl (one JSON object per logged step or evaluation), loss.png
(train and validation curves), model FLOPs utilisation on GPUs, and the end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from fastllm.utils.atomic import write_text

# Dense bf16 peak FLOP/s (no sparsity) of common training GPUs, matched against the device name.
_PEAK_BF16 = [("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12), ("L40S", 362e12),
              ("L40", 181e12), ("A10G", 70e12), ("L4", 121e12), ("4090", 165e12), ("3090", 71e12), ("V100", 125e12)]


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in _PEAK_BF16 if key in name), None)


class MetricsLog:
    """Appends records to metrics.jsonl; on resume drops the records after the resumed step."""

    def __init__(self, path: Path, *, resume_step: int | None, enabled: bool):
        self.path, self.enabled = path, enabled
        self.records: list[dict[str, Any]] = []
        if not enabled:
            return
        if resume_step is not None and path.is_file():
            kept = [r for r in _read_jsonl(path) if r.get("step", 0) <= resume_step]
            self.records = kept
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        else:
            write_text(path, "")

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable log
    return records


def plot_losses(records: list[dict[str, Any]], out: Path, title: str = "training loss") -> Path | None:
    """loss.png with the train loss per logged step and the validation loss per evaluation."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and math.isfinite(r["loss"])]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train and not val:
        return None
    try:
        import matplotlib
    except ImportError:  # the `plot` extra is optional; metrics.jsonl has the same numbers
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", linewidth=1.5, markersize=4)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def summary(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    bar = "-" * (width + 40)
    return "\n".join([bar, *(f"{k.ljust(width)}  {v}" for k, v in rows), bar])
