"""Models: image classifiers and the class-conditional DiT."""

from tandem.models.classifier import ARCHS, build_classifier
from tandem.models.dit import DIT_SIZES, DiT, DiTConfig, build_dit

__all__ = ["ARCHS", "DIT_SIZES", "DiT", "DiTConfig", "build_classifier", "build_dit"]
