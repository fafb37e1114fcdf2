"""One attempt of a training call, inside a Function: `tandem train` (or torchrun over several GPUs) as a
child process, supervised.

- The child is its own process group; every way the attempt ends stops all of it: Modal's
  InputCancellation or a timeout (BaseExceptions raised into this process), preemption (SIGTERM, passed
  on), or our own deadline. Stopping is SIGTERM (the trainer checkpoints and exits), then SIGKILL after a
  grace period, and only then is the runs Volume committed.
- A run that would outlast this call's timeout is stopped shortly before it, with a checkpoint, and
  continues in a new call of the same Function (`.spawn`), which resumes from that checkpoint.
- A run stopped by a signal raises RunInterrupted, so Modal retries the call; the retry resumes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import modal

COMMIT_INTERVAL = 5.0  # seconds between looks for a new checkpoint to commit
STOP_GRACE = 30.0  # seconds a stopped job has to checkpoint and exit before it is killed


class RunInterrupted(RuntimeError):
    """The trainer stopped on a signal (preemption, shutdown) after writing a checkpoint. Raised so that
    Modal retries the call, and the retry resumes from that checkpoint."""


def train_here(kind: str, values: dict, placement, next_call, commit, given: list[str] | None = None) -> dict:
    """Train `kind` with the config `values` on this machine over `placement.count` GPUs, resuming the run
    when an earlier attempt left a checkpoint. `next_call` is the Function a run continues in when this
    call's time is up; `commit` makes the runs Volume's new files durable (None: nothing to commit);
    `given` names the fields the user's words set (None: all of them, as for a resolved config)."""
    from tandem.errors import UsageError
    from tandem.train import CONFIGS
    from tandem.train.config import config_from_dict

    try:
        config = resume_if_started(kind, config_from_dict(CONFIGS[kind], values), given)
    except UsageError as exc:
        return {"kind": kind, "status": "error", "message": str(exc)}
    run_dir = Path(config.runs_dir) / config.run_name
    deadline = None if modal.is_local() else time.monotonic() + placement.timeout - stop_margin(placement.timeout)
    code, out_of_time, last_error = run_attempt(
        trainer_command(kind, config, placement.count), run_dir, commit, deadline
    )
    if code == 2:  # bad input (tandem's UsageError): retrying cannot help
        return {"kind": kind, "run_dir": str(run_dir), "status": "error", "message": last_error}
    result = result_from_run_dir(kind, run_dir, code)
    if result["status"] == "stopped" and out_of_time:
        following = next_call.with_options(**placement.options()).spawn(
            dataclasses.asdict(dataclasses.replace(config, resume=True)), placement.as_dict()
        )
        print(f"{run_dir} continues from step {result['step']} in call {following.object_id}")
        return {**result, "status": "continued", "call_id": following.object_id}
    if result["status"] == "stopped" and not config.stop_after:
        raise RunInterrupted(f"{kind} run {run_dir} stopped at step {result['step']} by a signal; resume it")
    return result


def stop_margin(timeout: int) -> float:
    """How long before the timeout the trainer is asked to stop: time to checkpoint and hand over."""
    return min(600.0, timeout / 10)


def resume_if_started(kind: str, config, given: list[str] | None = None):
    """The config an attempt trains, by the rule every target uses (tandem.train.attempt.plan_attempt): a run
    that exists is continued (a retry, a restart after preemption, the next call of a long run), one with no
    complete checkpoint starts over, a finished one is refused unless the call makes it longer. The run's
    name is fixed here, so the child, the Volume commits and a retry agree on it."""
    from tandem.train.attempt import START, plan_attempt

    attempt = plan_attempt(kind, config, given, if_started=True)
    if attempt.note:
        print(attempt.note)
    return dataclasses.replace(attempt.config, run_name=attempt.run_dir.name, resume=attempt.action != START)


# -----------------------------------------------------------------------------
# the child process


def trainer_command(kind: str, config, gpus: int) -> list[str]:
    """`python -m tandem train KIND ...` reproducing `config`; over several GPUs through torchrun."""
    from tandem.train.config import config_to_argv

    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus)] if gpus > 1 else []
    return [sys.executable, *launcher, "-m", "tandem", "train", kind, *config_to_argv(config)]


def run_attempt(command: list[str], run_dir: Path, commit, deadline: float | None, grace: float = STOP_GRACE):
    """Run the job, committing after each new checkpoint and once more after the job is gone, however the
    attempt ends. Returns (exit code, whether the deadline stopped it, its last line on stderr)."""
    with commit_on_checkpoint(run_dir / "checkpoints", commit):
        return run_job(command, deadline, grace)


def run_job(command: list[str], deadline: float | None, grace: float = STOP_GRACE) -> tuple[int, bool, str]:
    """The job in its own process group, its stderr passed through; SIGTERM at `deadline` (monotonic
    seconds). Any exception raised into this process meanwhile stops the job before it goes on."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    tail = StderrTail(process.stderr)
    out_of_time = False
    try:
        with forward_signals(process):
            while True:
                wait = None if deadline is None or out_of_time else max(0.0, deadline - time.monotonic())
                try:
                    code = process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    print("this call's time is nearly up: stopping the trainer at a checkpoint", file=sys.stderr)
                    out_of_time = True
                    signal_group(process, signal.SIGTERM)
    except BaseException:
        stop_job(process, grace)
        raise
    finally:
        tail.join(timeout=10)  # a rank that escaped the group could hold the pipe open
    return code, out_of_time, tail.last


def stop_job(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the whole job (its ranks checkpoint and exit), then SIGKILL to what is left after `grace`."""
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"the trainer did not stop within {grace:.0f} s: killing it", file=sys.stderr)
    signal_group(process, signal.SIGKILL)  # also any rank that outlived its launcher
    process.wait()


def signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


class StderrTail(threading.Thread):
    """Copies a child's stderr through and keeps its last non-empty line (tandem's one-line error)."""

    def __init__(self, stream):
        super().__init__(name="stderr-tail", daemon=True)
        self.stream, self.last = stream, ""
        self.start()

    def run(self) -> None:
        for line in self.stream:
            sys.stderr.write(line)
            if line.strip():
                self.last = line.strip()


@contextmanager
def forward_signals(process: subprocess.Popen):
    """SIGTERM / SIGINT reach the job, whose ranks checkpoint and exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda signum, frame: signal_group(process, signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def result_from_run_dir(kind: str, run_dir: Path, returncode: int) -> dict:
    """What run_training returns, rebuilt from the files the job left: its final metrics record."""
    from tandem.train.run import RunDir

    run = RunDir(run_dir)
    records = run.read_metrics() if run_dir.is_dir() else []
    if any(r.get("diverged") for r in records):
        return {"kind": kind, "run_dir": str(run_dir), "status": "diverged", "message": "loss became NaN/inf"}
    final = next((r for r in reversed(records) if r.get("final")), None)
    if returncode != 0 or final is None:
        raise RuntimeError(f"the trainer exited with code {returncode} before {run_dir} was finished")
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
# the runs Volume


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
