"""Datasets as uint8 tensors with fixed splits (published ones fetched by torchvision), and on-device batch augmentation."""

from tandem.data.augment import Augment
from tandem.data.datasets import DATASETS, ImageData, load_dataset

__all__ = ["DATASETS", "Augment", "ImageData", "load_dataset"]
