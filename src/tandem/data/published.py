"""The published datasets, downloaded, checked against their md5s and read by torchvision.

torchvision keeps the mirrors and checksums (a file is used only once its md5 matches; a partial or
corrupt download is fetched again). Here each becomes uint8 (N, C, H, W) images and int64 labels, and any
failure one line that says what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.error import URLError

import numpy as np

from tandem.errors import UsageError


class LabelledImages(NamedTuple):
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)


def load_idx(name: str, root: Path) -> tuple[LabelledImages, LabelledImages, list[str]]:
    """MNIST or Fashion-MNIST under root/: (train, test, class names)."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    train, test = (_open(cls, name, root, train=split) for split in (True, False))
    # MNIST's own names read "0 - zero"; a digit is its name.
    names = [str(d) for d in range(10)] if name == "mnist" else list(cls.classes)
    return _idx_arrays(train, name, root), _idx_arrays(test, name, root), names


def load_cifar10(root: Path) -> tuple[LabelledImages, LabelledImages, list[str]]:
    from torchvision import datasets

    train, test = (_open(datasets.CIFAR10, "cifar10", root, train=split) for split in (True, False))

    def arrays(split) -> LabelledImages:  # stored as (N, H, W, C)
        return LabelledImages(
            np.ascontiguousarray(split.data.transpose(0, 3, 1, 2)), np.asarray(split.targets, np.int64)
        )

    return arrays(train), arrays(test), list(train.classes)


def _open(cls, name: str, root: Path, train: bool):
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {root} ({exc}); pass a writable data directory") from exc
    try:
        return cls(str(root), train=train, download=True)
    except (RuntimeError, URLError, OSError, EOFError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(
            f"could not get {name} into {root} ({reason}); check the network and run again, or delete {root} "
            "if its files are damaged"
        ) from exc


def _idx_arrays(split, name: str, root: Path) -> LabelledImages:
    images, labels = split.data.numpy(), split.targets.numpy()
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UsageError(
            f"{name} in {root}: images {images.shape} and labels {labels.shape} do not pair up as (N, H, W) and "
            f"(N,); delete {root} so it is downloaded again"
        )
    return LabelledImages(images[:, None].astype(np.uint8), labels.astype(np.int64))
