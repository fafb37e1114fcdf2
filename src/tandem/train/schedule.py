"""Learning-rate schedules: linear warmup, then cosine, linear or no decay, as a torch LambdaLR."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, *, schedule: str, warmup: int, total: int) -> float:
    """Multiplier of the peak learning rate for the optimizer step that follows `step` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0


def lr_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, schedule=schedule, warmup=warmup, total=total)
    )
