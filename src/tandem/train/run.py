"""A run directory and what it holds, and the result a training run returns.

runs/<run>/config.json        the resolved config, the device and the versions it ran with, and every
                              setting changed when the run was continued (with the step it took effect)
runs/<run>/.lock              held (flock) by the one process writing the run; it names that process
runs/<run>/checkpoints/       step_<N>.pt, the last --keep-checkpoints of them
runs/<run>/metrics.jsonl      one JSON object per logged step / epoch / final evaluation
runs/<run>/loss_curve.png     training loss (and test accuracy), learning rate and resumes against step
runs/<run>/samples/           DiT sample grids, step_<N>.png, and latest.png a copy of the newest
runs/<run>/result.json        how the last attempt ended (completed, stopped, diverged), as every rank saw
                              it: what a supervisor reads, never an exit code alone
runs/<run>/*.unusable         set aside, never deleted: checkpoints that failed their checks (in
                              checkpoints/), and the metrics and grids of an attempt started over
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib.metadata
import json
import os
import platform
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tandem.errors import UsageError
from tandem.files import atomic_write, remove_stale_temporaries
from tandem.train.checkpoint import CheckpointDir, identity_digest, set_aside
from tandem.train.config import RENAMED, upgrade_settings
from tandem.train.launch import DEFAULT_PORT, Launch
from tandem.train.validate import check_run_name


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
    timing: dict[str, float] = field(default_factory=dict)  # tandem.train.loop.Clock.timing: where the time went, img/s


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
        self.result_path = self.path / "result.json"

    # -- choosing the directory (nothing is created here) ---------------------

    @staticmethod
    def check_location(runs_dir: str | Path, run_name: str) -> None:
        """A run can be made here: --runs-dir is (or can become) a writable directory, --run-name no file."""
        runs_dir = Path(runs_dir)
        check_run_name(run_name)
        existing = next(p for p in (runs_dir.absolute(), *runs_dir.absolute().parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"--runs-dir {runs_dir}: cannot create runs under {existing}; pass a writable --runs-dir")
        path = runs_dir / run_name
        if run_name and path.exists() and not path.is_dir():
            raise UsageError(f"--run-name {run_name}: {path} is a file, not a run; choose another --run-name")

    @staticmethod
    def new_path(runs_dir: str | Path, kind: str, run_name: str) -> Path:
        runs_dir = Path(runs_dir)
        RunDir.check_location(runs_dir, run_name)
        if run_name:
            path = runs_dir / run_name
            if RunDir(path).started():
                raise UsageError(
                    f"run directory {path} already exists; pass --resume to continue it (one with no complete "
                    "checkpoint starts over), or choose another --run-name"
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
        check_run_name(run_name)
        if run_name:
            return runs_dir / run_name
        candidates = []
        for path in runs_dir.glob("*/config.json"):
            if RunDir(path.parent).recorded_kind() == kind and CheckpointDir(path.parent / "checkpoints").existing():
                candidates.append((path.stat().st_mtime, path.parent))
        if not candidates:
            raise UsageError(
                f"--resume: no {kind} run with a checkpoint under {runs_dir}; "
                "drop --resume to start a new run, or pass --runs-dir / --run-name"
            )
        return max(candidates)[1]

    # -- reading (defensively: a run's files may have been cut short or edited) ----

    def started(self) -> bool:
        """Whether anything but the lock file is here: a directory holding only that is still unused."""
        return self.path.is_dir() and any(p.name != RunLock.NAME for p in self.path.iterdir())

    def read_record(self) -> dict | None:
        """config.json as a dict (its settings under today's names), or None when it is missing, unreadable
        or not a run's record."""
        record = _read_object(self.config_path)
        if record is None or not isinstance(record.get("config"), dict):
            return None
        if record.get("kind") in RENAMED:
            for part in ("config", "sources"):
                if isinstance(record.get(part), dict):
                    record[part] = upgrade_settings(record["kind"], record[part])
        return record

    def read_result(self) -> dict | None:
        """result.json as a dict, or None when there is none (the attempt ended before it could say how)."""
        result = _read_object(self.result_path)
        return result if result is not None and isinstance(result.get("ranks"), list) else None

    def recorded_kind(self) -> str | None:
        record = self.read_record()
        return record.get("kind") if record else None

    def read_metrics(self, report: Callable[[str], None] | None = None) -> list[dict]:
        """Every record of metrics.jsonl; a line that is not one (cut short by a crash, edited, null) is
        skipped, and reported by its line number when `report` is given."""
        if not self.metrics_path.exists():
            return []
        records = []
        lines = self.metrics_path.read_bytes().decode(errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            step = record.get("step", 0) if isinstance(record, dict) else None
            if isinstance(step, int) and not isinstance(step, bool):
                records.append(record)
            elif report is not None and line.strip():
                report(f"{self.metrics_path}:{number}: not a metrics record ({line.strip()[:60]!r}); skipped")
        return records

    # -- writing (rank 0 only, holding the run's lock) ---------------------------

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.directory.mkdir(exist_ok=True)

    def write_config(self, resolved: dict) -> None:
        _write_object(self.config_path, resolved)

    def write_result(self, result: dict) -> None:
        _write_object(self.result_path, result)

    def forget_result(self) -> None:
        """A new attempt starts: the last one's result no longer says how the run stands."""
        self.result_path.unlink(missing_ok=True)

    def log(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def set_aside_history(self) -> list[Path]:
        """A run started over: the earlier attempt's metrics and grids are renamed out of its way (as its
        unusable checkpoints are), never deleted. Returns their new names."""
        return [set_aside(path) for path in (self.metrics_path, self.samples_dir) if path.exists()]

    def remove_stale_temporaries(self) -> None:
        """Temporaries of the run's files, grids and checkpoints left by a process killed mid-write; those
        of a process still writing (a `tandem sample` in samples/) are left alone."""
        self.checkpoints.remove_temporaries()
        for directory in (self.path, self.samples_dir):
            for tmp in directory.glob(".*.*.tmp") if directory.is_dir() else ():
                remove_stale_temporaries(directory / tmp.name[1:].rsplit(".", 2)[0])

    def rewind_metrics(self, step: int, records: list[dict] | None = None) -> None:
        """On resume: drop records logged after the checkpoint we resume from; they will be redone."""
        records = self.read_metrics() if records is None else records
        kept = [r for r in records if r.get("step", 0) <= step and not r.get("final")]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.metrics_path, lambda f: f.write(text.encode()))

    def plot_loss_curve(self) -> Path:
        """loss_curve.png from metrics.jsonl (tandem.train.plots draws it)."""
        from tandem.train.plots import plot_loss_curve

        return plot_loss_curve(self.read_metrics(), self.loss_curve_path, self.path.name)


def _read_object(path: Path) -> dict | None:
    """A JSON object from `path`; None when the file is missing, unreadable or holds something else."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_object(path: Path, value: dict) -> None:
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def run_record(
    kind: str,
    config,
    identity: dict,
    device: torch.device,
    layout,
    dataset: dict[str, int],
    *,
    resumed_from: Path | None,
    changes: list[dict],
    previous: dict,
    sources: dict[str, str] | None = None,
    total_steps: int | None = None,
) -> dict:
    """config.json: the settings as trained (each 0 / None default replaced by what the run chose), where
    each came from, what they ran on, and each change made when the run was continued."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "kind": kind,
        "config": dataclasses.asdict(config),
        "sources": sources or {},
        "total_steps": total_steps,
        "model": identity,
        "identity_digest": identity_digest(identity),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": layout.world_size,
        "nodes": layout.nodes,
        "dataset": dataset,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "tandem": package_version(),
        "env_digest": os.environ.get("TANDEM_ENV_DIGEST"),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "changes": changes,
        "started": previous.get("started", now) if changes or resumed_from else now,
        "resumed": now if resumed_from else None,
    }


def package_version() -> str | None:
    try:
        return importlib.metadata.version("tandem")
    except importlib.metadata.PackageNotFoundError:
        return None


def resume_command(kind: str, run_dir: Path, layout) -> str:
    """The command that continues a run (its config.json holds the rest), ready to paste; over several
    nodes, node 0's (each other node runs it with its own --node-rank)."""
    words = ["tandem", "train", kind, "--resume", "--run-name", run_dir.name, "--runs-dir", str(run_dir.parent)]
    launch = Launch(gpus=layout.local_world_size)
    if layout.nodes > 1:  # torchrun tells its ranks where node 0 is
        master = os.environ.get("MASTER_ADDR", "HOST"), int(os.environ.get("MASTER_PORT", DEFAULT_PORT))
        launch = Launch(layout.local_world_size, layout.nodes, 0, *master)
    return shlex.join([*words, *launch.flags()])


class RunLock:
    """One writer per run: an exclusive flock on <run>/.lock, held for the life of the process that trains
    the run. The kernel drops it when that process ends, however it ends, so a SIGKILL leaves no stale
    lock; the file itself stays and names the last holder's PID."""

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UsageError(
                f"run {self.path.parent} is being written by process {holder or '(unknown)'} (it holds "
                f"{self.path}); wait for it to end or stop it, then rerun"
            ) from None
        except OSError as exc:  # a filesystem without locks: say so, and run as before
            os.close(fd)
            print(f"note: cannot lock {self.path} ({exc.strerror}); make sure no other process writes this run")
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None
