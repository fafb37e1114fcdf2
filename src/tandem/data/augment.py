"""Batch augmentation on the training device: random translation and horizontal flip, no per-sample loops.

Translation by (dy, dx) with |dy|, |dx| <= pad is the same as padding by `pad` and taking a random crop
of the original size. Instead of materialising the padded batch, each sample gathers its rows and
columns through a shifted index grid; out-of-range indices are reflected (like F.pad's "reflect") or
read as zero. A flip is folded into the column index, so the whole batch costs two gathers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

PAD_MODES = ("reflect", "zeros")


class AugmentParams(NamedTuple):
    dy: torch.Tensor  # int64 (B,): output row i reads input row i + dy
    dx: torch.Tensor  # int64 (B,): output column j reads input column j + dx
    flip: torch.Tensor  # bool (B,): mirror left-right


class Augment:
    """Random translate-with-padding and horizontal flip for a batch (B, C, H, W), uint8 or float.

    The generator passed to each call must live on the images' device (torch.Generator(device=...)):
    every random draw comes from it, so a seeded generator gives the same augmentations run after run,
    and saving its state (get_state) makes a run resumable. pad=0 and flip=False is the identity.
    """

    def __init__(self, pad: int = 0, flip: bool = False, pad_mode: str = "reflect"):
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.pad, self.flip, self.pad_mode = pad, flip, pad_mode

    def __repr__(self) -> str:
        return f"Augment(pad={self.pad}, flip={self.flip}, pad_mode={self.pad_mode!r})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.pad == 0 and not self.flip:
            return images
        return self.apply(images, self.sample(images.shape[0], generator, images.device))

    def sample(self, batch: int, generator: torch.Generator, device: torch.device) -> AugmentParams:
        """Draw one offset pair and flip bit per sample; draws are skipped for disabled augmentations."""
        device = torch.device(device)
        if generator.device.type != device.type:
            raise ValueError(f"the generator is on {generator.device} but the images are on {device}")
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        dy = dx = zeros
        if self.pad:
            offsets = torch.randint(-self.pad, self.pad + 1, (2, batch), generator=generator, device=device)
            dy, dx = offsets[0], offsets[1]
        flip = zeros.bool()
        if self.flip:
            flip = torch.rand(batch, generator=generator, device=device) < 0.5
        return AugmentParams(dy, dx, flip)

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Translate and flip each image by its own parameters."""
        B, C, H, W = images.shape
        if self.pad_mode == "reflect" and self.pad >= min(H, W):
            raise ValueError(f"reflect padding needs pad < image size, got pad={self.pad} for {H}x{W}")
        rows = torch.arange(H, device=images.device) + params.dy[:, None]  # (B, H)
        cols = torch.arange(W, device=images.device) + params.dx[:, None]  # (B, W)
        cols = torch.where(params.flip[:, None], (W - 1) - cols, cols)
        rows, row_inside = self._resolve(rows, H)
        cols, col_inside = self._resolve(cols, W)
        out = images.gather(2, rows[:, None, :, None].expand(B, C, H, W))
        out = out.gather(3, cols[:, None, None, :].expand(B, C, H, W))
        if self.pad_mode == "zeros":
            inside = row_inside[:, None, :, None] & col_inside[:, None, None, :]
            out = out.masked_fill(~inside, 0)
        return out

    def _resolve(self, index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Map out-of-range indices into [0, size): reflected, or clamped and flagged as outside."""
        inside = (index >= 0) & (index < size)
        if self.pad_mode == "reflect":
            index = (size - 1) - ((size - 1) - index.abs()).abs()
        else:
            index = index.clamp(0, size - 1)
        return index, inside
