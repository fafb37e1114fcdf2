"""Training: the classifier and DiT loops and the machinery they share.

`run_training(kind, config)` is the one entry point; the CLI, the Docker image and the Modal app all
call it, and only decide where it runs.
"""

from __future__ import annotations

from collections.abc import Collection

from tandem.errors import UsageError
from tandem.train.config import CONFIGS, ClassifierTrainConfig, DiTTrainConfig, TrainConfig

__all__ = ["CONFIGS", "ClassifierTrainConfig", "DiTTrainConfig", "TrainConfig", "run_training"]


def run_training(kind: str, config: TrainConfig, given: Collection[str] | None = None):
    """Train a "classifier" or a "dit" with `config`; returns a tandem.train.run.RunResult. `given` names
    the settings the user set (the others may come from the run's record when it is continued); None:
    every field of `config`.

    Raises UsageError (bad input, before anything is written) and TrainingDiverged (a NaN/inf loss).
    """
    if kind not in CONFIGS:
        raise UsageError(f"unknown training kind {kind!r}; pick one of: {', '.join(CONFIGS)}")
    if not isinstance(config, CONFIGS[kind]):
        raise UsageError(f"{kind} training takes a {CONFIGS[kind].__name__}, got {type(config).__name__}")
    # Imported here so that building the CLI parser does not import torch.
    if kind == "classifier":
        from tandem.train.classifier import train
    else:
        from tandem.train.dit import train
    return train(config, given)
