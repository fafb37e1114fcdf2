"""The dataset registry: every dataset as uint8 images (N, C, H, W) and int64 labels with a fixed split.

Splits never depend on the run's seed, so every run of a dataset is scored on the same test set:
  digits         scikit-learn's bundled 8x8 digits (1,797 images, offline): a stratified split with
                 train_test_split(test_size=360, random_state=0), 1,437 train / 360 test
  mnist          the published 60,000 train / 10,000 test files (downloaded by torchvision)
  fashion-mnist  the published 60,000 train / 10,000 test files (downloaded by torchvision)
  cifar10        the published 50,000 train / 10,000 test batches (downloaded by torchvision)
  imagefolder    <folder>/train and <folder>/test when both exist, else a stratified 80/20 split of
                 <folder>/<class>/* with random_state=0
  synthetic      seeded uniform noise and labels for benchmarks: synthetic_size train, 1/8 of that test
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tandem.data import folders, published
from tandem.data.published import LabelledImages
from tandem.errors import UsageError

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder", "synthetic")
# (C, H, W) of each dataset as loaded, before any resize: what settings are checked against before the
# data is read (an imagefolder's images take the size they are given).
SYNTHETIC_SHAPE = (3, 32, 32)
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "synthetic": SYNTHETIC_SHAPE,
}

SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT = Path(__file__).with_name("digits_split.json")  # its test images, as train_test_split chose them
IMAGEFOLDER_TEST_FRACTION = 0.2


@dataclass
class ImageData:
    """A dataset's fixed train/test split, held as tensors on one device."""

    name: str
    train_images: torch.Tensor  # uint8 (N, C, H, W)
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    flip: bool  # whether horizontal-flip augmentation makes sense for this data

    def __post_init__(self):
        # Catch a malformed dataset here rather than as a shape error deep in training.
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"{split} images must be uint8 (N, C, H, W): {images.dtype} {images.shape}")
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(f"{split} labels must be int64 (N,): {labels.dtype} {labels.shape}")
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(f"test images are {tuple(self.test_images.shape[1:])}, train {self.image_shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def to(self, device) -> ImageData:
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
        )


def hold_out(data: ImageData, fraction: float) -> tuple[ImageData, torch.Tensor, torch.Tensor]:
    """A validation split out of the training images: `fraction` of each class, chosen by a fixed seed (the
    same for every run of a dataset, as the test split), and the training images left. Returns the data
    with those training images, and the held-out images and labels."""
    if fraction <= 0:
        empty = torch.zeros(0, dtype=torch.int64, device=data.train_labels.device)
        return data, data.train_images[empty], data.train_labels[empty]
    labels = data.train_labels.cpu()
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    held = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held.append(members[: round(fraction * len(members))])
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[torch.cat(held)] = False
    keep = keep.to(data.train_labels.device)
    kept = dataclasses.replace(data, train_images=data.train_images[keep], train_labels=data.train_labels[keep])
    return kept, data.train_images[~keep], data.train_labels[~keep]


def load_dataset(
    name: str,
    data_dir: str | Path,
    *,
    image_size: int | None = None,
    folder: str | Path | None = None,
    synthetic_shape: tuple[int, int, int] = SYNTHETIC_SHAPE,
    synthetic_size: int = 2048,
    num_classes: int = 10,
    seed: int = 0,
) -> ImageData:
    """Load `name` on the CPU (move it with .to(device)), downloading into data_dir/<name>/ if needed.

    image_size resizes to image_size x image_size: required for imagefolder, optional elsewhere.
    folder is the imagefolder root; a relative path is looked up in the working directory, then in
    data_dir. synthetic_shape, synthetic_size, num_classes and seed only shape the synthetic data.
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise UsageError(f"image size must be a positive integer, got {image_size!r}")
    data_dir = Path(data_dir).expanduser()
    if name == "imagefolder":
        return _load_imagefolder(folder, data_dir, image_size)
    if name == "synthetic":
        if image_size is not None:
            synthetic_shape = (synthetic_shape[0], image_size, image_size)
        return _load_synthetic(tuple(synthetic_shape), synthetic_size, num_classes, seed)
    data = LOADERS[name](data_dir / name)
    # the dataset's own size given (a run's config.json records it): nothing to resize
    return (
        data
        if image_size is None or data.image_shape[1:] == (image_size, image_size)
        else _resize_data(data, image_size)
    )


def _image_data(name, train, test, class_names, flip) -> ImageData:
    return ImageData(
        name=name,
        train_images=torch.from_numpy(train.images),
        train_labels=torch.from_numpy(train.labels),
        test_images=torch.from_numpy(test.images),
        test_labels=torch.from_numpy(test.labels),
        class_names=list(class_names),
        flip=flip,
    )


def _split(images: np.ndarray, labels: np.ndarray, n_test: int) -> tuple[LabelledImages, ...]:
    """A seed-fixed split with n_test test images, stratified when every class can appear on both sides."""
    from sklearn.model_selection import train_test_split  # imported on use: slow, and only two datasets split

    counts = np.bincount(labels)
    n_classes = np.count_nonzero(counts)
    stratified = counts[counts > 0].min() >= 2 and min(n_test, len(labels) - n_test) >= n_classes
    train, test = train_test_split(
        np.arange(len(labels)),
        test_size=n_test,
        random_state=SPLIT_SEED,
        stratify=labels if stratified else None,
    )
    train, test = np.sort(train), np.sort(test)  # keep the source order within each split
    return (
        LabelledImages(images[train], labels[train]),
        LabelledImages(images[test], labels[test]),
    )


def _load_digits(_: Path) -> ImageData:
    """scikit-learn's bundled digits, read from the CSV file it ships (importing sklearn.datasets takes
    seconds), split as digits_split.json records (sklearn's own split of them: tests/data checks both)."""
    csv = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(csv, delimiter=",")
    labels = table[:, -1].astype(np.int64)
    # Pixels are counts 0..16 of set bits in 4x4 blocks; scale to the 0..255 range of every other dataset.
    images = np.rint(table[:, :-1].reshape(-1, 1, 8, 8) * (255 / 16)).astype(np.uint8)
    test = np.zeros(len(labels), dtype=bool)
    test[json.loads(DIGITS_SPLIT.read_text())["test"]] = True
    train, held_out = LabelledImages(images[~test], labels[~test]), LabelledImages(images[test], labels[test])
    return _image_data("digits", train, held_out, [str(d) for d in range(10)], flip=False)


def _idx_loader(name: str) -> Callable[[Path], ImageData]:
    def load(folder: Path) -> ImageData:
        train, test, class_names = published.load_idx(name, folder)
        return _image_data(name, train, test, class_names, flip=False)  # mirrored glyphs are other glyphs

    return load


def _load_cifar10(folder: Path) -> ImageData:
    train, test, class_names = published.load_cifar10(folder)
    return _image_data("cifar10", train, test, class_names, flip=True)


LOADERS: dict[str, Callable[[Path], ImageData]] = {
    "digits": _load_digits,
    "mnist": _idx_loader("mnist"),
    "fashion-mnist": _idx_loader("fashion-mnist"),
    "cifar10": _load_cifar10,
}


def _load_imagefolder(folder: str | Path | None, data_dir: Path, image_size: int | None) -> ImageData:
    if folder is None:
        raise UsageError("imagefolder needs a folder of class sub-folders; pass its path as folder")
    if image_size is None:
        raise UsageError("imagefolder needs an image size to resize its images to; pass image_size")
    root = Path(folder).expanduser()
    if not root.is_absolute() and not root.exists():
        root = data_dir / root
    if not root.is_dir():
        raise UsageError(f"image folder {folder} not found here or in {data_dir}; pass an existing folder")

    if (root / "train").is_dir() and (root / "test").is_dir():
        class_names = folders.class_folders(root / "train")
        unknown = sorted(set(folders.class_folders(root / "test")) - set(class_names))
        if unknown:
            raise UsageError(f"{root}/test has classes missing from {root}/train: {', '.join(unknown)}")
        train = folders.read_image_folder(root / "train", image_size, class_names)
        test = folders.read_image_folder(root / "test", image_size, class_names)
    else:
        class_names = folders.class_folders(root)
        everything = folders.read_image_folder(root, image_size, class_names)
        if len(everything.labels) < 2:
            raise UsageError(f"{root} needs at least two images in class sub-folders (<class>/<image>)")
        n_test = max(1, round(IMAGEFOLDER_TEST_FRACTION * len(everything.labels)))
        train, test = _split(*everything, n_test)
    if len(train.labels) == 0:
        raise UsageError(f"no images found under {root}; expected <class>/<image> files Pillow can read")
    return _image_data("imagefolder", train, test, class_names, flip=True)


def _load_synthetic(shape: tuple[int, int, int], size: int, num_classes: int, seed: int) -> ImageData:
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"synthetic shape must be three positive sizes (C, H, W), got {shape}")
    if size < 1 or num_classes < 1:
        raise UsageError(f"synthetic size and class count must be positive, got {size} and {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    n_test = max(1, size // 8)
    images = torch.randint(0, 256, (size + n_test, *shape), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (size + n_test,), generator=generator)
    return ImageData(
        name="synthetic",
        train_images=images[:size],
        train_labels=labels[:size],
        test_images=images[size:],
        test_labels=labels[size:],
        class_names=[str(c) for c in range(num_classes)],
        flip=True,  # noise has no orientation to preserve
    )


def resize_images(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 images to size x size, in chunks to bound the float copy."""
    if images.shape[-2:] == (size, size):
        return images
    if len(images) == 0:
        return images.new_empty((0, images.shape[1], size, size))
    resized = [
        F.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for part in images.split(chunk)
    ]
    return torch.cat(resized)


def _resize_data(data: ImageData, size: int) -> ImageData:
    return dataclasses.replace(
        data,
        train_images=resize_images(data.train_images, size),
        test_images=resize_images(data.test_images, size),
    )
