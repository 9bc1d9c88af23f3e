"""Learning-rate schedules as pure functions of the step (so resuming needs no schedule state).

    cosine:   linear warmup to lr, then cosine decay to min_lr over the remaining steps
    wsd:      linear warmup, constant lr, then a linear decay to min_lr over the last
              decay_fraction of the steps (warmup-stable-decay, MiniCPM / DeepSeek style)
    constant: linear warmup, then lr
"""

from __future__ import annotations

import math

from fastllm.train.config import OptimSection


def learning_rate(step: int, total_steps: int, optim: OptimSection) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`."""
    peak, floor = optim.lr, optim.lr * optim.min_lr_ratio
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return peak * (step + 1) / warmup
    if optim.schedule == "constant":
        return peak
    if optim.schedule == "wsd":
        decay_steps = max(1, round(optim.decay_fraction * total_steps))
        decay_start = max(warmup, total_steps - decay_steps)
        if step < decay_start:
            return peak
        progress = (step - decay_start + 1) / max(1, total_steps - decay_start)
        return peak + (floor - peak) * min(1.0, progress)
    progress = (step - warmup) / max(1, total_steps - 1 - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))
