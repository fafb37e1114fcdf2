"""Evaluation: classifier accuracy, and how good class-conditional samples are in a classifier's eyes.

sample accuracy   a trained classifier labels the generated images; the fraction that gets the class
                  the sampler was asked for
Frechet distance  FID's formula on the classifier's penultimate features of generated vs held-out
                  images, next to its floor: the same distance between real training and held-out
                  images (the value a perfect generator would get at this sample size)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tandem.errors import UsageError
from tandem.models import build_classifier
from tandem.train import checkpoint
from tandem.train.pixels import normalize


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    mean: list[float],
    std: list[float],
    *,
    tta_flip: bool = False,
    tta_translate: bool = False,
    batch_size: int = 1024,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits for uint8 images. Test-time augmentation averages them over views of each image: with
    tta_flip, its mirror image; with tta_translate, its four one-pixel translations (edges reflected, as
    the training augmentation pads)."""
    was_training = model.training
    model.eval()
    out = []
    for chunk in images.split(batch_size):
        x = normalize(chunk, mean, std)
        views = [x, *one_pixel_translations(x)] if tta_translate else [x]
        if tta_flip:
            views += [v.flip(-1) for v in views]
        if channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        out.append(sum(model(v).float() for v in views) / len(views))
    model.train(was_training)
    return torch.cat(out)


def one_pixel_translations(x: torch.Tensor) -> list[torch.Tensor]:
    """The batch moved one pixel up, down, left and right, the uncovered edge reflected."""
    H, W = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return [padded[..., 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]


@torch.no_grad()
def features(model: nn.Module, images: torch.Tensor, mean, std, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    feats = [model.features(normalize(chunk, mean, std)).double().cpu() for chunk in images.split(batch_size)]
    return torch.cat(feats).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as in FID.

    Tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2) (same eigenvalues as S_a S_b): stable, and never complex.
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean)


@dataclass
class SampleClassifier:
    """A trained classifier loaded from its checkpoint, used to score generated images."""

    model: nn.Module
    mean: list[float]
    std: list[float]
    dataset: str
    num_classes: int
    image_shape: tuple[int, int, int]
    path: Path

    @classmethod
    def load(cls, path: str | Path, device: torch.device, flag: str = "--classifier-checkpoint") -> SampleClassifier:
        state = checkpoint.load_or_fail(path, flag)
        if state.get("kind") != "classifier":
            raise UsageError(f"{flag} {path} is a {state.get('kind')} checkpoint; pass a classifier checkpoint")
        m = state["model_config"]
        model = build_classifier(
            m["arch"],
            num_classes=m["num_classes"],
            in_channels=m["in_channels"],
            image_size=m["image_size"],
            width=m["width"],
        )
        model.load_state_dict(state["model"])
        return cls(
            model=model.to(device).eval(),
            mean=state["preprocess"]["mean"],
            std=state["preprocess"]["std"],
            dataset=state["identity"]["dataset"],
            num_classes=m["num_classes"],
            image_shape=(m["in_channels"], m["image_size"], m["image_size"]),
            path=Path(path),
        )

    def check_matches(self, dataset: str, num_classes: int, image_shape: tuple[int, ...]) -> None:
        if (self.num_classes, tuple(self.image_shape)) != (num_classes, tuple(image_shape)):
            raise UsageError(
                f"--classifier-checkpoint {self.path} classifies {self.num_classes} classes of "
                f"{self.image_shape} images ({self.dataset}), this run has {num_classes} of {tuple(image_shape)} "
                f"({dataset}); pass a classifier trained on the same data"
            )

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        return predict(self.model, images, self.mean, self.std).argmax(dim=1)

    def features(self, images: torch.Tensor) -> np.ndarray:
        return features(self.model, images, self.mean, self.std)


def score_samples(
    classifier: SampleClassifier,
    samples: torch.Tensor,
    labels: torch.Tensor,
    train: torch.Tensor,
    test: torch.Tensor,
    seed: int,
) -> dict[str, float]:
    """Sample accuracy and Frechet distance of uint8 samples against the held-out images, with the floor
    measured on as many real training images as there are samples."""
    n = len(samples)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    test_feats = classifier.features(test)
    fd = frechet_distance(classifier.features(samples), test_feats)
    floor = frechet_distance(classifier.features(train[pick.to(train.device)]), test_feats)
    return {
        "sample_acc": (classifier.labels(samples) == labels).float().mean().item(),
        "fd": fd,
        "fd_floor": floor,
        "fd_ratio": fd / floor if floor > 0 else float("inf"),
    }
