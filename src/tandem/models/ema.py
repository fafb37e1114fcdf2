"""An exponential moving average of a model's weights (what the DiT samples from), and the plain module
under the wrappers training puts around it."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from tandem.errors import UsageError


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class EMA:
    """Exponential moving average of a model's parameters; buffers are copied as they are.

    `ema.module` is a frozen deep copy of the (unwrapped) model holding the averaged weights, ready
    for sampling. update() after each optimizer step:  ema = decay * ema + (1 - decay) * params.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99):
        if not 0.0 <= decay <= 1.0:
            raise UsageError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self._src: nn.Module | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params, src_params, ema_buffers, src_buffers = self._pairs(unwrap(model))
        torch._foreach_lerp_(ema_params, src_params, 1.0 - self.decay)
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, src_buffers)
        self.num_updates += 1

    def _pairs(self, src: nn.Module) -> tuple[list, list, list, list]:
        """The averaged tensors and their sources, paired by name: built once per source model, since
        optimizers and load_state_dict change parameters in place."""
        if self._src is not src:
            ema_params = [p for _, p in sorted(self.module.named_parameters())]
            src_params = [p.detach() for _, p in sorted(src.named_parameters())]
            ema_buffers, src_buffers = list(self.module.buffers()), list(src.buffers())
            if len(ema_params) != len(src_params) or len(ema_buffers) != len(src_buffers):
                raise ValueError("EMA.update: the model is not the one this EMA was made from")
            self._src, self._cached = src, (ema_params, src_params, ema_buffers, src_buffers)
        return self._cached

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.module.load_state_dict(state["module"])
