import numpy as np
import pytest
import torch
from PIL import Image

from tandem.train.samples import (
    LATEST,
    free_names,
    grid_labels,
    grid_layout,
    sample_name,
    save_grid,
    tile_size,
)

DIGITS = [str(d) for d in range(10)]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digit_like_images(rows: int, per_class: int, size: int = 8) -> torch.Tensor:
    """Distinct images in [-1, 1]: every pixel a different grey, so upscaling can be checked exactly."""
    return torch.linspace(-1, 1, rows * per_class * size * size).reshape(rows * per_class, 1, size, size)


def ink(region: np.ndarray) -> int:
    """Pixels clearly darker than the white background: drawn text."""
    return int((region.min(axis=-1) < 128).sum())


def test_tiles_are_enlarged_to_a_visible_size():
    assert tile_size(8) == 48  # digits: 6x
    assert tile_size(28) == 56  # MNIST: 2x
    assert tile_size(32) == 64  # CIFAR-10: 2x
    assert tile_size(64) == 64  # large enough already


def test_each_row_is_labelled_with_its_class_name_and_the_tiles_are_nearest_upscaled(tmp_path):
    images = digit_like_images(10, 3)
    caption = "dit-1 · step 600 · heun, 16 steps · cfg 1.5 · seed 0 · EMA"
    path = save_grid(images, 3, tmp_path / "g.png", class_names=WORDS, caption=caption)
    layout = grid_layout(10, 3, 8, WORDS, caption)
    with Image.open(path) as png:
        assert png.size == layout.size
        pixels = np.asarray(png.convert("RGB"))
    assert layout.tile == 48 and layout.label_width > 30 and layout.caption_height > 0

    strips = []
    for row in range(10):
        x0, y0, x1, y1 = layout.label_box(row)
        strip = pixels[y0:y1, x0:x1]
        assert ink(strip) > 20, f"no text beside row {row}"
        strips.append(strip)
    assert not np.array_equal(strips[1], strips[7]), "rows 'one' and 'seven' carry the same label"
    # "three" is longer than "one": it reaches further to the left of the right-aligned column
    left_edge = [np.nonzero((s.min(axis=-1) < 128).any(axis=0))[0].min() for s in strips]
    assert left_edge[3] < left_edge[1]
    x0, _, x1, y1 = 0, 0, layout.size[0], layout.caption_height
    assert ink(pixels[:y1, x0:x1]) > 100, "no caption"

    # tile (row 2, column 1) is image 7 enlarged 6x: constant 6x6 blocks equal to the source pixels
    x0, y0, x1, y1 = layout.tile_box(2, 1)
    tile = pixels[y0:y1, x0:x1, 0].astype(int)
    source = images[7, 0].add(1).mul(127.5).round().clamp(0, 255).numpy().astype(int)
    assert tile.shape == (48, 48)
    assert np.array_equal(tile, np.kron(source, np.ones((6, 6), dtype=int)))


def test_a_grid_without_names_or_caption_is_just_the_tiles(tmp_path):
    path = save_grid(digit_like_images(2, 5, 32), 5, tmp_path / "g.png")
    with Image.open(path) as png:
        assert png.size == (5 * 66 + 2, 2 * 66 + 2)  # 64-pixel tiles, 2-pixel borders


def test_a_long_caption_wraps_to_the_grid_width():
    caption = "a-rather-long-run-name-20260101-120000 · step 1000000 · heun, 16 steps · cfg 1.5 · seed 0 · EMA"
    layout = grid_layout(10, 2, 8, DIGITS, caption)
    assert len(layout.caption_lines) > 1
    assert " · ".join(layout.caption_lines) == caption


def test_latest_is_a_copy_of_the_newest_grid(tmp_path):
    latest = tmp_path / LATEST
    first = save_grid(digit_like_images(10, 1), 1, tmp_path / "a.png", class_names=DIGITS, latest=latest)
    assert latest.read_bytes() == first.read_bytes() and not latest.is_symlink()
    second = save_grid(-digit_like_images(10, 1), 1, tmp_path / "b.png", class_names=DIGITS, latest=latest)
    assert latest.read_bytes() == second.read_bytes() != first.read_bytes()


def test_replace_false_never_overwrites(tmp_path):
    path = tmp_path / "g.png"
    path.write_bytes(b"an earlier result")
    with pytest.raises(FileExistsError):
        save_grid(digit_like_images(10, 1), 1, path, replace=False)
    assert path.read_bytes() == b"an earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary left behind


def test_sample_names_carry_what_makes_grids_differ(tmp_path):
    assert sample_name(600, "heun", 16, 2.0, 0) == "sample_step_0000600_heun_16steps_cfg2_seed0_8per-class.png"
    assert (
        sample_name(600, "euler", 4, 1.5, 3, ema=False, per_class=2)
        == "sample_step_0000600_euler_4steps_cfg1.5_seed3_2per-class_raw.png"
    )
    names = free_names(tmp_path / "g.png")
    assert [next(names).name for _ in range(3)] == ["g.png", "g-2.png", "g-3.png"]


def test_grid_labels_are_class_major():
    assert grid_labels(3, 2, torch.device("cpu")).tolist() == [0, 0, 1, 1, 2, 2]


def test_a_grid_drawn_in_the_background_is_the_one_drawn_at_once_from_that_steps_weights(tmp_path):
    import threading

    from tandem.models import DiTConfig, build_dit
    from tandem.train.samples import GridsInBackground, class_samples

    torch.manual_seed(0)
    model = build_dit(DiTConfig(depth=2, hidden_size=32, num_heads=2)).eval()
    labels = grid_labels(10, 2, torch.device("cpu"))

    moved = threading.Event()

    def draw(module, step):
        if step:  # the worker samples only once training has moved the weights on
            assert moved.wait(10)
        images = class_samples(module, labels, (1, 8, 8), steps=3, solver="heun", cfg_scale=1.5, seed=0)
        return save_grid(images, 2, tmp_path / f"step_{step}.png", replace=False)

    at_once = draw(model, 0)
    drawn = []
    grids = GridsInBackground(model, draw, lambda step, path: drawn.append((step, path, threading.current_thread())))
    grids.start(1)
    with torch.no_grad():  # the next training steps
        for p in model.parameters():
            p.add_(1.0)
    moved.set()
    assert drawn == []  # handed over by finish(), not by the worker
    grids.finish()
    assert drawn == [(1, tmp_path / "step_1.png", threading.main_thread())]
    assert (tmp_path / "step_1.png").read_bytes() == at_once.read_bytes()


def test_a_grid_that_fails_in_the_background_fails_the_run_at_finish(tmp_path):
    from tandem.models import DiTConfig, build_dit
    from tandem.train.samples import GridsInBackground

    def draw(module, step):
        raise OSError(28, "No space left on device")

    grids = GridsInBackground(build_dit(DiTConfig(depth=1, hidden_size=32, num_heads=2)), draw, lambda *_: None)
    grids.start(1)
    with pytest.raises(OSError, match="No space left"):
        grids.finish()
