"""The optimizers the trainers build, fused where the device has fused kernels, and the gradient clip.

A fused optimizer updates every parameter in one kernel per step (CUDA, and the CPU in this torch)
instead of a chain of foreach kernels; it is the same algorithm, though its arithmetic may round
differently in the last bit.
"""

from __future__ import annotations

import torch

# torch.optim imports the compiler front end on an optimizer's first use (~1.2 s on 2 cores): imported
# here, it loads with the other imports rather than inside a run's clock.
import torch._dynamo  # noqa: F401
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices


def _fused(params: list[torch.Tensor]) -> bool:
    supported = _get_fused_kernels_supported_devices()
    return bool(params) and all(p.device.type in supported and p.is_floating_point() for p in params)


def adamw(parameters, **settings) -> torch.optim.AdamW:
    params = list(parameters)
    return torch.optim.AdamW(params, fused=_fused(params), **settings)


def sgd(parameters, **settings) -> torch.optim.SGD:
    params = list(parameters)
    return torch.optim.SGD(params, fused=_fused(params), **settings)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """The total gradient norm before clipping; the gradients are scaled down to `max_norm` only when it
    is positive (0: measured, left alone, and no pass over the gradients to scale them by 1)."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)
