"""Sizes that cannot fit are refused before training starts, from an estimate of the memory they need.

The estimates are lower bounds (what the largest single piece needs), so a refusal is always right; a size
that passes may still be too large, and then fails as it always would.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from tandem.errors import UsageError

RESIZE_CHUNK = 4096  # images resized at once (tandem.data.datasets.resize_images)
SAMPLE_CHUNK = 500  # images sampled at once (tandem.train.samples.class_samples)


def available(device: torch.device) -> int:
    """Bytes this device can hold: the GPU's memory, or the machine's RAM for the CPU and Apple MPS."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def require_fits(needed: int, device: torch.device, what: str, fix: str) -> None:
    have = available(device)
    if needed > have:
        raise UsageError(f"{what} needs at least {_size(needed)} of memory, more than the {_size(have)} here; {fix}")


def image_size_bytes(image_size: int, batch_size: int, patch_size: int = 0) -> int:
    """At least: one resize chunk as floats, the batch itself, and (DiT) one attention map over its tokens."""
    pixels = image_size * image_size
    needed = min(RESIZE_CHUNK, batch_size) * pixels * 4 + batch_size * pixels
    if patch_size:
        tokens = (image_size // patch_size) ** 2
        needed = max(needed, batch_size * tokens * tokens * 4)
    return needed


def count_parameters(build: Callable[[], torch.nn.Module]) -> int:
    """The parameters of the module build() makes, built on the meta device: nothing is allocated."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def training_bytes(parameters: int, copies: int, activations: int) -> int:
    """float32 parameters held `copies` times (weights, gradients, optimizer state, EMA) and the
    `activations` floats the backward pass keeps."""
    return 4 * (parameters * copies + activations)


def grid_bytes(images: int, image_shape: tuple[int, int, int], png_pixels: int) -> int:
    """Sampling `images` (float32, the result gathered in one tensor) and the PNG grid (RGB bytes)."""
    channels, height, width = image_shape
    per_image = channels * height * width * 4
    return images * per_image + min(images, SAMPLE_CHUNK) * 2 * per_image + png_pixels * 3


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:,.0f} PB"
