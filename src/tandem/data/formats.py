"""Parsers for the on-disk formats: IDX (MNIST, Fashion-MNIST), CIFAR python batches, image folders.

Each returns numpy arrays with images as uint8 (N, C, H, W) and labels as int64 (N,).
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from tandem.errors import UsageError


class LabelledImages(NamedTuple):
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)


# IDX type byte -> element type; multi-byte elements are big-endian.
IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzipped when its name ends in .gz.

    Layout: two zero bytes, a type byte, a dimension count, one big-endian uint32 size per dimension,
    then the elements in C order.
    """
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot read {path} ({exc}); delete it so it is downloaded again") from exc
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad magic number); delete it so it is downloaded again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UsageError(f"{path} is truncated inside its header; delete it so it is downloaded again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise UsageError(
            f"{path} holds {len(raw)} bytes, its header says {expected}; delete it so it is downloaded again"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def read_idx_pair(images_path: Path, labels_path: Path) -> LabelledImages:
    """An IDX image file (N, H, W) and its label file (N,) as one-channel images and int64 labels."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UsageError(
            f"{images_path} {images.shape} and {labels_path} {labels.shape} do not pair up as "
            "(N, H, W) images and (N,) labels; delete them so they are downloaded again"
        )
    return LabelledImages(images[:, None].astype(np.uint8), labels.astype(np.int64))


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)


def read_cifar10(path: Path) -> tuple[LabelledImages, LabelledImages, list[str]]:
    """Read the CIFAR-10 python tarball: (train, test, class_names).

    Each batch is a pickled dict with `data`, uint8 (N, 3072) holding the 1024 red, then green, then blue
    pixels of each 32x32 image row by row, and `labels`, a list of ints. `batches.meta` names the classes.
    The tarball's checksum has been verified before it gets here, so unpickling it is safe.
    """
    wanted = {f"{CIFAR10_FOLDER}/{name}" for name in (*CIFAR10_TRAIN_BATCHES, *CIFAR10_TEST_BATCHES)}
    wanted.add(f"{CIFAR10_FOLDER}/batches.meta")
    found: dict[str, dict] = {}
    try:
        # Streaming mode reads the gzip once, front to back, instead of seeking per member.
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name in wanted:
                    found[member.name.rsplit("/", 1)[-1]] = pickle.load(tar.extractfile(member), encoding="latin1")
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError) as exc:
        raise UsageError(f"cannot read {path} ({exc}); delete it so it is downloaded again") from exc
    missing = sorted(name.rsplit("/", 1)[-1] for name in wanted if name.rsplit("/", 1)[-1] not in found)
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}; delete it so it is downloaded again")

    def stack(names: tuple[str, ...]) -> LabelledImages:
        images = np.concatenate([np.asarray(found[n]["data"], dtype=np.uint8) for n in names])
        labels = np.concatenate([np.asarray(found[n]["labels"], dtype=np.int64) for n in names])
        return LabelledImages(images.reshape(-1, 3, 32, 32), labels)

    class_names = list(found["batches.meta"]["label_names"])
    return stack(CIFAR10_TRAIN_BATCHES), stack(CIFAR10_TEST_BATCHES), class_names


def class_folders(root: Path) -> list[str]:
    """The class names of an image folder: its visible sub-folders, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_folder(root: Path, size: int, class_names: list[str]) -> LabelledImages:
    """Read `root/<class>/<image>` for each class in `class_names` as RGB, center-cropped and resized to
    size x size. Files Pillow does not recognise by extension are skipped; files in order of name."""
    root = Path(root)
    extensions = Image.registered_extensions()
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions:
                images.append(_read_image(path, size))
                labels.append(label)
    if not images:
        return LabelledImages(np.zeros((0, 3, size, size), np.uint8), np.zeros(0, np.int64))
    return LabelledImages(np.stack(images).transpose(0, 3, 1, 2).copy(), np.array(labels, np.int64))


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            # Crop to a centered square first so resizing keeps the aspect ratio.
            image = ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:  # includes UnidentifiedImageError and truncated files
        raise UsageError(f"cannot read image {path} ({exc}); fix or remove it") from exc
