"""What each trainer's step (ClassifierStep, DiTStep) is made of: the update it ends with, and its state as
one dict of the parts it holds (model, optimizer, schedule, EMA), as a checkpoint stores them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Self

import torch
import torch.nn as nn

from tandem.train.device import autocast
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
    """One optimizer step of a trainer, which supplies batch(step) and loss(module, x, y); and the step's
    saved state: the state dict of each of its PARTS, under the part's name."""

    PARTS: ClassVar[tuple[str, ...]] = ("model", "optimizer", "scheduler")

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimizer step `step` (0-based): batch, loss, update; returns the loss and gradient norm, still on
        the device."""
        x, y = self.batch(step)
        with autocast(x.device, self.c.amp):
            loss = self.loss(self.net, x, y)
        grad_norm = optimizer_step(loss, self.model, self.optimizer, self.scheduler, self.c.grad_clip)
        self.after_update()
        return loss, grad_norm

    def after_update(self) -> None:
        """What a trainer does after each update (the DiT: its EMA)."""

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
