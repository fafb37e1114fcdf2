"""A run directory and what it holds, and the result a training run returns.

runs/<run>/config.json        the resolved config, the device and the versions it ran with
runs/<run>/checkpoints/       step_<N>.pt, the last --keep-checkpoints of them
runs/<run>/metrics.jsonl      one JSON object per logged step / epoch / final evaluation
runs/<run>/loss_curve.png     training loss (and test accuracy), learning rate and resumes against step
runs/<run>/samples/           DiT sample grids, step_<N>.png, and latest.png a copy of the newest
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tandem.errors import UsageError
from tandem.train.checkpoint import CheckpointDir, atomic_write


@dataclass
class RunResult:
    """What run_training returns, on every target: plain strings and numbers, so it pickles anywhere."""

    kind: str
    run_dir: str
    status: str  # "completed", or "stopped" (SIGTERM, --stop-after): resume with --resume
    step: int
    metrics: dict = field(default_factory=dict)
    checkpoint: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. The last good checkpoint is kept as it was."""

    def __init__(self, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"loss became NaN/inf at step {step}; stopped without saving it ({kept}); "
            "try a lower --lr or --grad-clip, then --resume"
        )


class RunDir:
    def __init__(self, path: Path, keep_checkpoints: int = 3):
        self.path = Path(path)
        self.checkpoints = CheckpointDir(self.path / "checkpoints", keep_checkpoints)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.loss_curve_path = self.path / "loss_curve.png"
        self.samples_dir = self.path / "samples"

    # -- choosing the directory (nothing is created here) ---------------------

    @staticmethod
    def new_path(runs_dir: str | Path, kind: str, run_name: str) -> Path:
        runs_dir = Path(runs_dir)
        existing = next(p for p in (runs_dir.absolute(), *runs_dir.absolute().parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"--runs-dir {runs_dir}: cannot create runs under {existing}; pass a writable --runs-dir")
        if run_name:
            path = runs_dir / run_name
            if path.exists() and any(path.iterdir()):
                raise UsageError(
                    f"run directory {path} already exists; pass --resume to continue it, or choose another --run-name"
                )
            return path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = runs_dir / f"{kind}-{stamp}", 1
        while path.exists():
            n += 1
            path = runs_dir / f"{kind}-{stamp}-{n}"
        return path

    @staticmethod
    def to_resume(runs_dir: str | Path, kind: str, run_name: str) -> Path:
        """--run-name's directory, or the newest run of this kind that has a checkpoint."""
        runs_dir = Path(runs_dir)
        if run_name:
            return runs_dir / run_name
        candidates = []
        for path in runs_dir.glob("*/config.json"):
            try:
                run_kind = json.loads(path.read_text()).get("kind")
            except (OSError, ValueError):
                continue
            if run_kind == kind and CheckpointDir(path.parent / "checkpoints").existing():
                candidates.append((path.stat().st_mtime, path.parent))
        if not candidates:
            raise UsageError(
                f"--resume: no {kind} run with a checkpoint under {runs_dir}; "
                "drop --resume to start a new run, or pass --runs-dir / --run-name"
            )
        return max(candidates)[1]

    # -- writing (rank 0 only) -------------------------------------------------

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.directory.mkdir(exist_ok=True)

    def write_config(self, resolved: dict) -> None:
        text = json.dumps(resolved, indent=2, sort_keys=True) + "\n"
        atomic_write(self.config_path, lambda f: f.write(text.encode()))

    def log(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return records

    def rewind_metrics(self, step: int) -> None:
        """On resume: drop records logged after the checkpoint we resume from; they will be redone."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step and not r.get("final")]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.metrics_path, lambda f: f.write(text.encode()))

    def plot_loss_curve(self) -> Path:
        """loss_curve.png from metrics.jsonl (tandem.train.plots draws it)."""
        from tandem.train.plots import plot_loss_curve

        return plot_loss_curve(self.read_metrics(), self.loss_curve_path, self.path.name)
