"""Pixels as the models see them: uint8 images standardised per channel (the classifier), and model
space ([-1, 1], the DiT) back to uint8 as a PNG holds them."""

from __future__ import annotations

import torch


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] units: the classifier's input normalisation."""
    x = images.float().div(255)
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images -> floats standardised per channel. mean/std: lists, or tensors already on the images'
    device (what a training step passes: building them from lists is a host-to-device copy each call)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float().div(255) - mean_t) / std_t


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> uint8 pixels, rounded as when saved to a PNG."""
    return images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
