"""Flow matching on the linear (rectified-flow) path, as in SiT / minRF.

Convention: t = 0 is data, t = 1 is noise.

    x_t = (1 - t) * x0 + t * noise        velocity  v = dx_t/dt = noise - x0

The model learns v(x_t, t, y); sampling integrates dx/dt = v from t = 1 (noise) down to t = 0 (data).
All randomness comes from an explicit `torch.Generator` on the data's device, so a run replays exactly
from its generator state.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tandem.choices import SOLVERS
from tandem.choices import TIMESTEP_SCHEDULES as SCHEDULES
from tandem.errors import UsageError
from tandem.models.ema import unwrap


def sample_timesteps(
    n: int,
    *,
    schedule: str = "logit-normal",
    generator: torch.Generator,
    device: torch.device | str | None = None,
    mean: float = 0.0,
    std: float = 1.0,
) -> torch.Tensor:
    """n training timesteps in (0, 1). logit-normal (SD3) is sigmoid(N(mean, std)): median sigmoid(mean),
    weighting the middle of the path where the velocity is hardest to predict."""
    device = device if device is not None else generator.device
    if schedule == "logit-normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    if schedule == "uniform":
        return torch.rand(n, generator=generator, device=device)
    raise UsageError(f"unknown timestep schedule {schedule!r}; pick one of {', '.join(SCHEDULES)}")


def flow_matching_loss(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    schedule: str = "logit-normal",
    class_dropout_prob: float | None = None,
) -> torch.Tensor:
    """MSE between the model's velocity at a random point of the path and the true noise - x0.

    Labels are replaced by the null class (index num_classes) with the model's `class_dropout_prob`
    (or the one given), training the unconditional branch used by classifier-free guidance.
    """
    base = unwrap(model)
    if class_dropout_prob is None:
        class_dropout_prob = getattr(base, "class_dropout_prob", 0.0)
    n = x0.shape[0]
    t = sample_timesteps(n, schedule=schedule, generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if class_dropout_prob > 0:
        drop = torch.rand(n, generator=generator, device=x0.device) < class_dropout_prob
        y = torch.where(drop, torch.full_like(y, base.num_classes), y)
    t_ = t.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    x_t = (1 - t_) * x0 + t_ * noise
    pred = model(x_t, t, y)
    return F.mse_loss(pred.float(), (noise - x0).float())


@torch.no_grad()
def sample(
    model: nn.Module,
    labels: torch.Tensor,
    shape: tuple[int, ...],
    *,
    steps: int = 50,
    solver: str = "euler",
    cfg_scale: float = 1.0,
    generator: torch.Generator,
) -> torch.Tensor:
    """Integrate the learned ODE from noise (t=1) to data (t=0) on a uniform grid of `steps` steps.

    shape is the per-image (C, H, W) or the full (B, C, H, W) with B == len(labels). Heun takes a
    second-order step everywhere except the last (into t=0), which is Euler, as in SiT. Returns
    images in the model's data space.
    """
    if solver not in SOLVERS:
        raise UsageError(f"unknown sampler {solver!r}; pick one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise UsageError(f"sampling steps must be at least 1, got {steps}")
    shape = tuple(shape)
    if len(shape) == 3:
        shape = (len(labels), *shape)
    if shape[0] != len(labels):
        raise UsageError(f"sample shape {shape} does not match {len(labels)} labels")

    base = unwrap(model)

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, device=x.device)
        if cfg_scale == 1.0:
            return model(x, tt, labels)
        return base.forward_with_cfg(x, tt, labels, cfg_scale)

    x = torch.randn(shape, generator=generator, device=labels.device)
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t  # negative: integrating backwards in time
        v = velocity(x, t)
        if solver == "heun" and i < steps - 1:
            x_pred = x + dt * v
            x = x + dt * 0.5 * (v + velocity(x_pred, t_next))
        else:
            x = x + dt * v
    return x
