"""Class-conditional sample grids: one row per class, `per_class` columns, saved as PNG with Pillow."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from PIL import Image

from tandem.flow import sample
from tandem.train.checkpoint import atomic_write
from tandem.train.evaluate import to_uint8

MIN_TILE = 32  # small images are enlarged (nearest neighbour) to at least this many pixels per tile
PADDING = 2


def tile_size(image_size: int) -> int:
    return image_size * max(1, MIN_TILE // image_size)


def grid_size(rows: int, columns: int, image_size: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG save_grid writes."""
    tile = tile_size(image_size) + PADDING
    return columns * tile + PADDING, rows * tile + PADDING


@torch.no_grad()
def class_samples(
    model: torch.nn.Module,
    labels: torch.Tensor,
    image_shape: tuple[int, int, int],
    *,
    steps: int,
    solver: str,
    cfg_scale: float,
    seed: int,
    batch_size: int = 500,
) -> torch.Tensor:
    """Samples in [-1, 1] for `labels`, from a generator of their own: sampling never touches the
    training's random streams."""
    generator = torch.Generator(labels.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = [
        sample(model, chunk, image_shape, steps=steps, solver=solver, cfg_scale=cfg_scale, generator=generator)
        for chunk in labels.split(batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


def grid_labels(num_classes: int, per_class: int, device: torch.device) -> torch.Tensor:
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def save_grid(images: torch.Tensor, per_class: int, path: str | Path) -> Path:
    """Write images in [-1, 1] (class-major order, `per_class` of each) as a PNG grid."""
    path = Path(path)
    pixels = to_uint8(images).cpu()
    scale = tile_size(pixels.shape[-1]) // pixels.shape[-1]
    pixels = pixels.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = torchvision.utils.make_grid(pixels, nrow=per_class, padding=PADDING, pad_value=255)
    image = Image.fromarray(grid.permute(1, 2, 0).numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path
