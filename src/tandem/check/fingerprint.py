"""A fingerprint: one JSON document per environment, holding what it is and how it behaves."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from tandem.check.behaviour import collect_behaviour
from tandem.check.compare import SCHEMA
from tandem.check.environment import collect_environment
from tandem.env.settings import Project, load_project
from tandem.files import write_text_atomic


def collect_fingerprint(project: Project | None = None, label: str = "", gpu: bool = True) -> dict:
    project = project or load_project()
    fingerprint = {
        "schema": SCHEMA,
        "label": label,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": collect_environment(project),
        # CPU even when a GPU is present: the one section every environment can share.
        "cpu": collect_behaviour("cpu"),
        "gpu": None,
    }
    if gpu and torch.cuda.is_available():
        fingerprint["gpu"] = {"name": torch.cuda.get_device_name(0), **collect_behaviour("cuda")}
    return fingerprint


def write_fingerprint(fingerprint: dict, path: str | Path, *, parents: bool = False) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n", parents=parents)
    return path
