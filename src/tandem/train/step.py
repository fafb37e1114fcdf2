"""What each trainer's step (ClassifierStep, DiTStep) is made of: the update it ends with, and its state as
one dict of the parts it holds (model, optimizer, schedule, EMA), as a checkpoint stores them."""

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


class TrainStep:
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
