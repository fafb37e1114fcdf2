"""SIGKILL at any moment, even in the middle of a checkpoint write, never costs a run.

Every rerun with --resume finds a complete checkpoint and ends with parameters bitwise equal to an
uninterrupted run (CPU, deterministic mode).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tandem.train import checkpoint

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

INJECT = Path(__file__).with_name("inject.py")
FLAGS = [
    "--patch-size", "4", "--batch-size", "32", "--steps", "12", "--warmup-steps", "2", "--log-every", "1",
    "--checkpoint-every", "3", "--sample-every", "0", "--samples-per-class", "1", "--sample-steps", "2",
    "--solver", "euler", "--device", "cpu", "--deterministic", "--keep-checkpoints", "2",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tandem(runs: Path, name: str, *extra: str, point: str = "none", nth: int = 0) -> subprocess.CompletedProcess:
    argv = ["train", "dit", *FLAGS, "--runs-dir", str(runs), "--run-name", name, *extra]
    cmd = [sys.executable, str(INJECT), point, str(nth), "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def final_params(run: Path) -> dict:
    steps = checkpoint.CheckpointDir(run / "checkpoints").existing()
    state = checkpoint.load(steps[-1][1])
    assert state["step"] == 12
    return state["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    done = tandem(runs, "ref")
    assert done.returncode == 0, done.stderr
    return final_params(runs / "ref")


@pytest.mark.parametrize("point", ["half-written", "before-rename", "after-rename"])
@pytest.mark.parametrize("nth", [2, pytest.param(4, marks=pytest.mark.slow)])  # the 4th is the final write
def test_sigkill_during_a_checkpoint_write(tmp_path, reference, point, nth):
    killed = tandem(tmp_path, "run", point=point, nth=nth)
    assert killed.returncode == -signal.SIGKILL

    # Whatever is on disk under a checkpoint's name is complete: never a torn file.
    for _, path in checkpoint.CheckpointDir(tmp_path / "run" / "checkpoints").existing():
        checkpoint.load(path)

    resumed = tandem(tmp_path, "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same(final_params(tmp_path / "run"), reference)
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))  # the torn temporary is gone


def test_sigkill_during_the_first_write_leaves_a_run_that_the_messages_start_over(tmp_path, reference):
    assert tandem(tmp_path, "run", point="half-written", nth=1).returncode == -signal.SIGKILL
    assert checkpoint.CheckpointDir(tmp_path / "run" / "checkpoints").existing() == []

    # Following the messages: the same command says to pass --resume, and --resume starts the run over.
    again = tandem(tmp_path, "run")
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists; pass --resume" in again.stderr
    resumed = tandem(tmp_path, "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "has no complete checkpoint, so nothing trained to keep: starting it over from step 0" in resumed.stdout
    assert_same(final_params(tmp_path / "run"), reference)
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))


def test_sigkill_while_a_background_write_is_in_flight(tmp_path, reference):
    argv = ["train", "dit", *FLAGS, "--runs-dir", str(tmp_path), "--run-name", "run"]
    proc = subprocess.Popen(
        [sys.executable, str(INJECT), "stalled", "2", "--", *argv],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run = tmp_path / "run"
    deadline = time.monotonic() + 120
    # Training goes on past step 6 while step 6's checkpoint is being written: the write is off the loop.
    while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count('"loss"') >= 8):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    ckpts = checkpoint.CheckpointDir(run / "checkpoints")
    assert [step for step, _ in ckpts.existing()] == [3]
    assert list((run / "checkpoints").glob(".step_0000006.pt.*.tmp"))  # the write in flight
    proc.kill()
    proc.wait()

    resumed = tandem(tmp_path, "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "step_0000003.pt" in resumed.stdout
    assert_same(final_params(run), reference)
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_sigkill_between_a_checkpoint_and_its_grid(tmp_path, reference):
    killed = tandem(tmp_path, "run", "--sample-every", "3", point="grid-half-written", nth=1)
    assert killed.returncode == -signal.SIGKILL
    samples = tmp_path / "run" / "samples"
    assert not (samples / "step_0000003.png").exists() and list(samples.glob(".step_0000003.png.*.tmp"))

    resumed = tandem(tmp_path, "run", "--sample-every", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{samples / 'step_0000003.png'} is missing: drawing it" in resumed.stdout
    names = ["latest.png", "step_0000003.png", "step_0000006.png", "step_0000009.png", "step_0000012.png"]
    assert sorted(p.name for p in samples.iterdir()) == names  # the torn temporary is gone
    assert_same(final_params(tmp_path / "run"), reference)  # drawing grids never touches training


def test_sigkill_between_checkpoints(tmp_path, reference):
    argv = ["train", "dit", *FLAGS, "--runs-dir", str(tmp_path), "--run-name", "run"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count('"loss"') >= 5):  # past the first checkpoint
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    resumed = tandem(tmp_path, "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same(final_params(tmp_path / "run"), reference)


def test_sigterm_checkpoints_and_exits_within_ten_seconds(tmp_path):
    argv = ["train", "dit", *FLAGS, "--steps", "100000", "--runs-dir", str(tmp_path), "--run-name", "run"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count('"loss"') >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - sent < 10
    (_, path), *_ = checkpoint.CheckpointDir(tmp_path / "run" / "checkpoints").existing()
    assert checkpoint.load(path)["step"] >= 2


def assert_same(params: dict, reference: dict) -> None:
    assert params.keys() == reference.keys()
    for name in params:
        assert torch.equal(params[name], reference[name]), name
