import torch
from PIL import Image

from tandem.train.samples import grid_labels, grid_size, save_grid


def test_grid_has_one_row_per_class(tmp_path):
    images = torch.linspace(-1, 1, 10 * 3 * 8 * 8).reshape(10 * 3, 1, 8, 8)
    path = save_grid(images, 3, tmp_path / "g.png")
    with Image.open(path) as png:
        assert png.size == grid_size(rows=10, columns=3, image_size=8)
    assert grid_size(10, 3, 8) == (3 * 34 + 2, 10 * 34 + 2)  # 8x8 tiles enlarged 4x, 2-pixel borders
    assert grid_size(2, 5, 32) == (5 * 34 + 2, 2 * 34 + 2)


def test_grid_labels_are_class_major():
    assert grid_labels(3, 2, torch.device("cpu")).tolist() == [0, 0, 1, 1, 2, 2]
