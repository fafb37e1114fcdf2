"""The update every training step ends with: backward, gradient-norm clipping, optimizer and schedule step."""

from __future__ import annotations

import torch


def optimizer_step(loss, model, optimizer, scheduler, grad_clip: float):
    """Backward, clip, step, advance the schedule: the one update both trainers (and the benchmark) make.

    Returns the gradient norm before clipping (0 disables clipping but still measures it)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
    optimizer.step()
    scheduler.step()
    return grad_norm
