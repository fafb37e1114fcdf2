"""Folders of images, one sub-folder per class, listed by torchvision and read as square RGB uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tandem.data.published import LabelledImages
from tandem.errors import UsageError


def class_folders(root: Path) -> list[str]:
    """The class names of an image folder: its visible sub-folders, sorted (not `.ipynb_checkpoints`)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_folder(root: Path, size: int, class_names: list[str]) -> LabelledImages:
    """`root/<class>/<image>` for each class in `class_names` (labels by that order), center-cropped and
    resized to size x size. Files without an image extension torchvision knows, and hidden files, are
    skipped; within a class, files in order of name."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    present = {name: label for label, name in enumerate(class_names) if (Path(root) / name).is_dir()}
    found = make_dataset(str(root), present, extensions=IMG_EXTENSIONS, allow_empty=True) if present else []
    found = [(Path(path), label) for path, label in found if not Path(path).name.startswith(".")]
    if not found:
        return LabelledImages(np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64))
    images = np.stack([_read_image(path, size) for path, _ in found])
    return LabelledImages(images.transpose(0, 3, 1, 2).copy(), np.array([label for _, label in found], np.int64))


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            # Crop to a centered square first so resizing keeps the aspect ratio.
            image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:  # includes UnidentifiedImageError and truncated files
        raise UsageError(f"cannot read image {path} ({exc}); fix or remove it") from exc
