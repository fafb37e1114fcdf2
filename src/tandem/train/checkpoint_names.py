"""The names of a run's checkpoint files, without torch: listing and resolving runs needs none.

checkpoints/step_<N>.pt   the rotation: the last --keep-checkpoints of them, the newest resumed from
checkpoints/best.pt       the classifier's best by validation accuracy (outside the rotation)
"""

from __future__ import annotations

import re

NAME = re.compile(r"^step_(\d+)\.pt$")
BEST = "best.pt"


def file_name(step: int) -> str:
    return f"step_{step:07d}.pt"


def step_of(name: str) -> int | None:
    """The step a checkpoint file's name carries; None for any other file."""
    match = NAME.match(name)
    return int(match.group(1)) if match else None
