"""What the trainers' steps (ClassifierStep in train/classifier.py, DiTStep in train/dit.py, each written
out in its own __call__) share: the update they end with, and their state as one dict of the parts they
hold (model, optimizer, schedule, EMA), as a checkpoint stores them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Self

import torch.nn as nn

from tandem.train.optimizers import clip_grad_norm


def optimizer_step(loss, model, optimizer, scheduler, grad_clip: float):
    """Backward, clip, step, advance the schedule: the one update both trainers (and the benchmark) make.

    Returns the gradient norm before clipping (0 disables clipping but still measures it)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_grad_norm(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return grad_norm


class StepState:
    """A step's saved state: the state dict of each of its PARTS, under the part's name."""

    PARTS: ClassVar[tuple[str, ...]] = ("model", "optimizer", "scheduler")

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self.PARTS}

    def load_state_dict(self, state: dict) -> None:
        for name in self.PARTS:
            getattr(self, name).load_state_dict(state[name])

    def ready(self, resume: dict | None, prepare: Callable[[nn.Module], nn.Module]) -> Self:
        """Restored from a checkpoint's state (if any), then the model as the step calls it: prepare(model)
        (DDP, torch.compile), made after the restore so that every rank starts from the restored weights."""
        if resume:
            self.load_state_dict(resume)
        self.net = prepare(self.model)
        return self
