"""The Modal target: `tandem train`, `tandem sample` and `tandem check` on Modal's GPUs.

    modal run modal_app/train.py dit --steps 2000 --gpu A100 --gpus 2
    python modal_app/train.py dit --steps 2000     # Modal when logged in, else here (--local forces it)

This file only decides where the trainers run. The image is the shared one (settings block + lock), the
Functions call the same entry points as the local CLI, and the data and runs Volumes are mounted at the
paths compose.yaml uses. Modal imports this file twice: here, and inside the container (at /root), where
only this file and the image's source are present; the helpers beside it are imported on this side only.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import modal

from tandem.env.modal_image import build_modal_image, pin_builder_version
from tandem.env.settings import default_root, load_project

APP_NAME = "tandem"
DATA_VOLUME = "tandem-data"
RUNS_VOLUME = "tandem-runs"
TRAIN_TIMEOUT = 4 * 60 * 60  # seconds per attempt; --timeout overrides it (Modal allows up to 24 h)
SHORT_TIMEOUT = 30 * 60  # sampling and the fingerprint
# A retried attempt resumes from the last checkpoint in the runs Volume (see train_here).
RETRIES = modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=10.0)
COMMIT_INTERVAL = 5.0  # seconds between looks for a new checkpoint to commit


def project_root() -> Path:
    # Here this file sits in <project>/modal_app/; in the container it is /root/train.py and the
    # project lives at the settings' workdir, which the image names in TANDEM_PROJECT_DIR.
    beside = Path(__file__).resolve().parents[1]
    return beside if (beside / "pyproject.toml").is_file() else default_root()


project = load_project(project_root())
settings = project.settings
pin_builder_version(project)  # Modal builds with the settings' builder version, not the workspace's
image = build_modal_image(project)
data_volume = modal.Volume.from_name(DATA_VOLUME, create_if_missing=True)
runs_volume = modal.Volume.from_name(RUNS_VOLUME, create_if_missing=True)
VOLUMES = {settings.data_dir: data_volume, settings.runs_dir: runs_volume}

app = modal.App(APP_NAME, image=image)
GPU_FUNCTION = {"image": image, "gpu": settings.modal_gpu, "volumes": VOLUMES, "retries": RETRIES}


class RunInterrupted(RuntimeError):
    """The trainer stopped on a signal (preemption, shutdown) after writing a checkpoint. Raised so that
    Modal retries the call, and the retry resumes from that checkpoint."""


# -----------------------------------------------------------------------------
# Functions: each calls what the local CLI calls


@app.function(**GPU_FUNCTION, timeout=TRAIN_TIMEOUT)
def train_classifier(config: dict, gpus: int = 1) -> dict:
    return train_here("classifier", config, gpus)


@app.function(**GPU_FUNCTION, timeout=TRAIN_TIMEOUT)
def train_dit(config: dict, gpus: int = 1) -> dict:
    return train_here("dit", config, gpus)


@app.function(**GPU_FUNCTION, timeout=SHORT_TIMEOUT)
def sample(options: dict) -> dict:
    """`tandem sample` with these parsed options (its flags' dests); the grid lands in the run's samples/."""
    from argparse import Namespace

    from tandem.errors import UsageError
    from tandem.train.commands import sample_command

    try:
        sample_command(Namespace(**options))
    except UsageError as exc:  # retrying cannot help
        return {"status": "error", "message": str(exc)}
    finally:
        commit_volumes()
    return {"status": "completed"}


@app.function(**GPU_FUNCTION, timeout=SHORT_TIMEOUT)
def check(label: str, runs_dir: str) -> dict:
    """This environment's fingerprint, as `tandem check` writes it, saved as <runs>/fingerprints/<label>.json."""
    from tandem.check.fingerprint import collect_fingerprint, write_fingerprint

    fingerprint = collect_fingerprint(label=label)
    path = write_fingerprint(fingerprint, Path(runs_dir) / "fingerprints" / f"{label}.json")
    print(f"wrote {path}")
    commit_volumes()
    return fingerprint


TRAIN_FUNCTIONS = {"classifier": train_classifier, "dit": train_dit}


# -----------------------------------------------------------------------------
# inside a Function


def train_here(kind: str, values: dict, gpus: int) -> dict:
    """run_training (or torchrun over `gpus` processes) on this machine, resuming the run when an earlier
    attempt of the same call left a checkpoint, and committing the runs Volume after each checkpoint."""
    from tandem.errors import UsageError
    from tandem.train import CONFIGS, run_training
    from tandem.train.config import config_from_dict
    from tandem.train.run import TrainingDiverged

    try:
        config = resume_if_started(kind, config_from_dict(CONFIGS[kind], values))
    except UsageError as exc:
        return {"kind": kind, "status": "error", "message": str(exc)}
    run_dir = Path(config.runs_dir) / config.run_name
    commit = None if modal.is_local() else commit_volumes
    with commit_on_checkpoint(run_dir / "checkpoints", commit):
        if gpus > 1:
            result = torchrun(kind, config, gpus, run_dir)
        else:
            try:
                result = dataclasses.asdict(run_training(kind, config))
            # Retrying cannot help these: report them instead of raising.
            except UsageError as exc:
                return {"kind": kind, "status": "error", "message": str(exc)}
            except TrainingDiverged as exc:
                return {"kind": kind, "run_dir": str(run_dir), "status": "diverged", "message": str(exc)}
    if result["status"] == "stopped" and not config.stop_after:
        raise RunInterrupted(f"{kind} run {run_dir} stopped at step {result['step']} by a signal; resume it")
    return result


def resume_if_started(kind: str, config):
    """The config an attempt runs: resuming when the run already has a checkpoint (a retry, or Modal
    restarting a preempted call), and starting over when an attempt died before its first one."""
    from tandem.train.checkpoint import CheckpointDir
    from tandem.train.run import RunDir

    if not config.run_name:
        # Pin the run now, so torchrun's ranks, the Volume commits and a retry agree on it (the entrypoint
        # names every new run; a new name here serves other callers).
        name = (
            RunDir.to_resume(config.runs_dir, kind, "").name
            if config.resume
            else RunDir.new_path(config.runs_dir, kind, "").name
        )
        config = dataclasses.replace(config, run_name=name)
    run_dir = Path(config.runs_dir) / config.run_name
    if CheckpointDir(run_dir / "checkpoints").existing():
        if not config.resume:
            print(f"{run_dir} has checkpoints from an earlier attempt: resuming it")
        return dataclasses.replace(config, resume=True)
    if not config.resume and run_dir.is_dir() and only_run_files(run_dir):
        print(f"{run_dir} holds an attempt that stopped before its first checkpoint: starting over")
        shutil.rmtree(run_dir)
    return config


def only_run_files(run_dir: Path) -> bool:
    """Nothing but what a trainer writes (so removing it loses nothing anybody else put there)."""
    from tandem.train.run import RunDir

    run = RunDir(run_dir)
    written = {run.config_path, run.metrics_path, run.loss_curve_path, run.samples_dir, run.checkpoints.directory}
    return all(path in written or path.name.startswith(".") for path in run_dir.iterdir())


def commit_volumes() -> None:
    """Make what this container wrote visible to other containers and to `modal volume get`."""
    if not modal.is_local():
        runs_volume.commit()
        data_volume.commit()


@contextmanager
def commit_on_checkpoint(checkpoints: Path, commit, interval: float = COMMIT_INTERVAL):
    """Call commit() whenever a new checkpoint file appears (they appear whole: written, then renamed),
    and once at the end. Watching the directory works the same for one process and for torchrun's."""
    if commit is None:
        yield
        return
    from tandem.train.checkpoint import CheckpointDir

    directory, done = CheckpointDir(checkpoints), threading.Event()

    def newest() -> int | None:
        found = directory.existing()
        return found[-1][0] if found else None

    def watch(seen: int | None) -> None:
        while not done.wait(interval):
            if (step := newest()) != seen:
                seen = step
                safe_commit(commit, f"checkpoint {step}")

    watcher = threading.Thread(target=watch, args=(newest(),), name="commit-on-checkpoint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        safe_commit(commit, "the end of the attempt")


def safe_commit(commit, when: str) -> None:
    try:
        commit()
    except Exception as exc:  # a failed commit must not end the training; the next one catches up
        print(f"volume commit after {when} failed: {exc}", file=sys.stderr)


def torchrun_command(kind: str, config, gpus: int) -> list[str]:
    from tandem.train.config import config_to_argv

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",  # what the `torchrun` script runs
        "--standalone",
        "--nproc-per-node",
        str(gpus),
        "-m",
        "tandem",
        "train",
        kind,
        *config_to_argv(config),
    ]


def torchrun(kind: str, config, gpus: int, run_dir: Path) -> dict:
    """DDP over `gpus` local processes, passing shutdown signals on; the result is read from the run dir."""
    process = subprocess.Popen(torchrun_command(kind, config, gpus))
    with forward_signals(process):
        code = process.wait()
    return result_from_run_dir(kind, run_dir, code)


@contextmanager
def forward_signals(process: subprocess.Popen):
    """SIGTERM / SIGINT reach torchrun, which stops its ranks; they checkpoint and exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda signum, frame: process.send_signal(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def result_from_run_dir(kind: str, run_dir: Path, returncode: int) -> dict:
    """What run_training returns, rebuilt from the files a torchrun job left: its final metrics record."""
    from tandem.train.run import RunDir

    run = RunDir(run_dir)
    records = run.read_metrics() if run_dir.is_dir() else []
    if any(r.get("diverged") for r in records):
        return {"kind": kind, "run_dir": str(run_dir), "status": "diverged", "message": "loss became NaN/inf"}
    final = next((r for r in reversed(records) if r.get("final")), None)
    if returncode != 0 or final is None:
        raise RuntimeError(f"torchrun exited with code {returncode} before {run_dir} was finished")
    found = run.checkpoints.existing()
    metrics = {k: v for k, v in final.items() if k not in ("step", "final", "status")}
    artifacts = {"loss_curve": str(run.loss_curve_path)}
    if samples := sorted(run.samples_dir.glob("*.png")):
        artifacts["samples"] = str(samples[-1])
    return {
        "kind": kind,
        "run_dir": str(run_dir),
        "status": final["status"],
        "step": final["step"],
        "metrics": metrics,
        "checkpoint": str(found[-1][1]) if found else None,
        "artifacts": artifacts,
    }


# -----------------------------------------------------------------------------
# entry points: `modal run modal_app/train.py ...` and `python modal_app/train.py ...`


@app.local_entrypoint()
def main(*arglist: str) -> None:
    from modal_launch import launch

    if code := launch(sys.modules[__name__], list(arglist), app_running=True):
        raise SystemExit(code)


if __name__ == "__main__":
    from modal_launch import launch

    sys.exit(launch(sys.modules[__name__], sys.argv[1:], app_running=False))
