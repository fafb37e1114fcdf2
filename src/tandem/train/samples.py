"""Class-conditional sample grids: one row per class, `per_class` columns, the class name beside each row
and a caption above saying what made them; drawn and saved as PNG with Pillow.

Grids are never replaced: `tandem sample` names each file after everything that makes two grids of a run
differ (step, solver, solver steps, cfg scale, seed, weights, columns); settings that already made a grid
point at it, and --force takes the next free name (-2, -3, ...). `samples/latest.png` is a copy of the
newest grid training drew (a copy, not a symlink: it must survive a Volume copy).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from tandem.files import atomic_write
from tandem.flow import sample
from tandem.train.background import Background
from tandem.train.pixels import to_uint8

MIN_TILE = 48  # small images are enlarged (nearest neighbour) to at least this many pixels per tile
PADDING = 2  # white pixels between tiles
MARGIN = 6  # around the labels and the caption
FONT_SIZE = 13
BACKGROUND, INK = (255, 255, 255), (0, 0, 0)
LATEST = "latest.png"


def tile_size(image_size: int) -> int:
    return image_size * max(1, -(-MIN_TILE // image_size))  # the smallest whole scale reaching MIN_TILE


@cache
def font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's own default font, scalable when Pillow has FreeType (its wheels do)."""
    return ImageFont.load_default(size=FONT_SIZE)


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = font().getbbox(text)
    return right - left, bottom - top


@dataclass(frozen=True)
class GridLayout:
    """Where everything sits in a grid PNG: caption on top, labels on the left, then the tiles."""

    rows: int
    columns: int
    tile: int
    label_width: int
    caption_lines: tuple[str, ...]

    @property
    def line_height(self) -> int:
        return FONT_SIZE + 4

    @property
    def caption_height(self) -> int:
        return len(self.caption_lines) * self.line_height + 2 * MARGIN if self.caption_lines else 0

    @property
    def size(self) -> tuple[int, int]:
        step = self.tile + PADDING
        return self.label_width + self.columns * step + PADDING, self.caption_height + self.rows * step + PADDING

    def tile_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        x = self.label_width + PADDING + column * (self.tile + PADDING)
        y = self.caption_height + PADDING + row * (self.tile + PADDING)
        return x, y, x + self.tile, y + self.tile

    def label_box(self, row: int) -> tuple[int, int, int, int]:
        _, top, _, bottom = self.tile_box(row, 0)
        return 0, top, self.label_width, bottom


def grid_layout(rows: int, columns: int, image_size: int, class_names=(), caption: str = "") -> GridLayout:
    tile = tile_size(image_size)
    label_width = max((_text_size(name)[0] for name in class_names), default=0)
    label_width = label_width + 2 * MARGIN if label_width else 0
    grid_width = label_width + columns * (tile + PADDING) + PADDING
    return GridLayout(rows, columns, tile, label_width, _wrap(caption, grid_width - 2 * MARGIN))


def _wrap(text: str, width: int) -> tuple[str, ...]:
    """Break the caption at its ' · ' separators (then spaces) so that each line fits the grid."""
    lines: list[str] = []
    for word in text.split(" · ") if text else []:
        if lines and _text_size(lines[-1] + " · " + word)[0] <= width:
            lines[-1] += " · " + word
        else:
            lines.append(word)
    return tuple(lines)


def render_grid(images: torch.Tensor, per_class: int, class_names=(), caption: str = "") -> Image.Image:
    """Images in [-1, 1] (class-major order, `per_class` of each) as a labelled RGB grid."""
    pixels = to_uint8(images).cpu()
    rows = -(-len(pixels) // per_class)
    names = [str(n) for n in class_names][:rows]
    layout = grid_layout(rows, per_class, pixels.shape[-1], names, caption)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    for i, tile in enumerate(pixels):
        array = tile.permute(1, 2, 0).numpy()
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")
        box = layout.tile_box(i // per_class, i % per_class)
        canvas.paste(image.resize((layout.tile, layout.tile), Image.Resampling.NEAREST), box[:2])
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(names):  # right-aligned, centred on its row
        left, top, right, bottom = font().getbbox(name)
        _, y0, x1, y1 = layout.label_box(row)
        x = x1 - MARGIN - (right - left) - left
        draw.text((x, (y0 + y1) // 2 - (top + bottom) // 2), name, fill=INK, font=font())
    for i, line in enumerate(layout.caption_lines):
        draw.text((MARGIN, MARGIN + i * layout.line_height), line, fill=INK, font=font())
    return canvas


def save_grid(
    images: torch.Tensor,
    per_class: int,
    path: str | Path,
    *,
    class_names=(),
    caption: str = "",
    replace: bool = True,
    latest: Path | None = None,
    parents: bool = True,
) -> Path:
    """Write the grid as a PNG (atomically). replace=False: never over an existing file
    (FileExistsError). `latest`: also copy it there, the newest grid's fixed name. parents: make the
    folder when missing (a run's samples/); False for a path the user named."""
    path = Path(path)
    buffer = io.BytesIO()
    render_grid(images, per_class, class_names, caption).save(buffer, format="PNG")
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data), replace=replace, parents=parents)
    if latest is not None:
        atomic_write(latest, lambda f: f.write(data))
    return path


def sample_name(
    step: int, solver: str, steps: int, cfg_scale: float, seed: int, ema: bool = True, per_class: int = 8
) -> str:
    """The file name of a `tandem sample` grid: everything that makes two grids of one run differ."""
    weights = "" if ema else "_raw"
    return f"sample_step_{step:07d}_{solver}_{steps}steps_cfg{cfg_scale:g}_seed{seed}_{per_class}per-class{weights}.png"


def free_names(path: Path):
    """path, then path-2, path-3, ...: the candidates for a file that must not replace another."""
    yield path
    n = 2
    while True:
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1


def caption(run: str, step: int, solver: str, steps: int, cfg_scale: float, seed: int, ema: bool = True) -> str:
    weights = "EMA" if ema else "raw weights"
    return f"{run} · step {step} · {solver}, {steps} steps · cfg {cfg_scale:g} · seed {seed} · {weights}"


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


class GridsInBackground:
    """Mid-run grids drawn off the training thread. `start(step)` copies the weights (the EMA's: a few
    milliseconds) and a worker thread samples from the copy and writes the PNG while training goes on: a
    CPU run trains on its own thread(s), so the grid takes a core that would idle, and on a GPU the
    sampling overlaps the steps. The grid is the one drawing it at once would give (the same weights,
    the same seed, its own generator). One at a time; `finish()` waits for it and hands (step, path) to
    `drawn` on the calling thread, where the loggers live."""

    def __init__(self, module: torch.nn.Module, draw: Callable[[torch.nn.Module, int], Path], drawn):
        self.module, self.draw, self.drawn = module, draw, drawn
        self.jobs = Background("sample grid")

    def start(self, step: int) -> None:
        self.finish()
        weights = copy.deepcopy(self.module)  # as they are at this step; training moves on meanwhile
        device = next(weights.parameters()).device

        def job() -> tuple[int, Path]:
            # a thread starts on CUDA's device 0: put it on the weights' device
            on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
            with on_device, torch.no_grad():
                return step, self.draw(weights, step)

        self.jobs.start(job)

    def finish(self) -> None:
        done = self.jobs.wait()
        if done is not None:
            self.drawn(*done)


def grid_labels(num_classes: int, per_class: int, device: torch.device) -> torch.Tensor:
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)
