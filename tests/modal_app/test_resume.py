"""A preempted or retried call continues its run from the last checkpoint, and the Volume is committed
after each checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from modal_launch import launch

from support import REPO
from tandem.train.checkpoint import CheckpointDir, load
from tandem.train.config import DiTTrainConfig


def last_checkpoint(run_dir: Path) -> tuple[int, Path]:
    return CheckpointDir(run_dir / "checkpoints").existing()[-1]


def final_model(run_dir: Path) -> dict:
    return load(last_checkpoint(run_dir)[1])["model"]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_killed_call_called_again_resumes_and_matches_an_uninterrupted_run(
    target, dirs, classifier_flags, capsys, tmp_path
):
    flags = ["classifier", *classifier_flags, "--epochs", "4", "--checkpoint-every", "4", "--seed", "3", "--local"]

    # The first attempt dies hard (SIGKILL: no handler, no final checkpoint) right after its first checkpoint;
    # a thread watches for it while the uninterrupted run trains here.
    checkpoints = CheckpointDir(dirs["runs"] / "cut" / "checkpoints")
    first = subprocess.Popen(
        [sys.executable, str(REPO / "modal_app" / "train.py"), *flags, "--run-name", "cut"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill_after_first_checkpoint():
        try:
            wait_for(lambda: checkpoints.existing() or first.poll() is not None, 120, "the first checkpoint")
        finally:
            first.kill()

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    try:
        assert launch(target, [*flags, "--run-name", "whole"], app_running=False) == 0
    finally:
        killer.join()
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the first attempt ended before it was killed"
    assert checkpoints.existing()[-1][0] < last_checkpoint(dirs["runs"] / "whole")[0]

    # The same call again (what Modal's retry or restart does) continues it.
    capsys.readouterr()
    assert launch(target, [*flags, "--run-name", "cut"], app_running=False) == 0
    assert "has checkpoints from an earlier attempt: resuming it" in capsys.readouterr().out
    whole, cut = final_model(dirs["runs"] / "whole"), final_model(dirs["runs"] / "cut")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)


def test_an_attempt_that_died_before_its_first_checkpoint_starts_over(target, tmp_path, capsys):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    config = DiTTrainConfig(runs_dir=str(tmp_path), run_name="r")
    assert target.resume_if_started("dit", config) == config
    assert not run.exists()
    assert "starting over" in capsys.readouterr().out


def test_a_directory_holding_anything_else_is_left_for_the_trainer_to_refuse(target, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    config = DiTTrainConfig(runs_dir=str(tmp_path), run_name="r")
    assert target.resume_if_started("dit", config) == config
    assert (run / "notes.txt").exists()


def test_a_run_stopped_by_a_signal_raises_so_modal_retries_it(target, monkeypatch, dirs, capsys):
    import tandem.train as training
    from tandem.train.run import RunResult

    def stopped(kind, config):
        return RunResult(kind=kind, run_dir=f"{config.runs_dir}/{config.run_name}", status="stopped", step=3)

    monkeypatch.setattr(training, "run_training", stopped)
    values = DiTTrainConfig(runs_dir=str(dirs["runs"]), run_name="s").__dict__
    with pytest.raises(target.RunInterrupted, match="stopped at step 3 by a signal"):
        target.train_here("dit", values, 1)
    # --stop-after is a stop asked for: it returns
    assert target.train_here("dit", {**values, "stop_after": 3}, 1)["status"] == "stopped"
    # here, the entrypoint says how to continue instead of a traceback
    assert launch(target, ["dit", "--run-name", "s", "--local"], app_running=False) == 1
    assert "--run-name s to continue" in capsys.readouterr().err


def test_the_volume_is_committed_after_each_checkpoint_and_at_the_end(target, tmp_path):
    directory = CheckpointDir(tmp_path / "checkpoints")
    directory.directory.mkdir()
    commits = []
    committed = threading.Event()

    def commit():
        commits.append(sorted(step for step, _ in directory.existing()))
        committed.set()

    with target.commit_on_checkpoint(directory.directory, commit, interval=0.01):
        for step in (2, 4):
            committed.clear()
            directory.save({"w": torch.ones(1)}, step)
            assert committed.wait(5), f"no commit after checkpoint {step}"
    assert commits == [[2], [2, 4], [2, 4]]  # one per checkpoint, one at the end


def test_a_failed_commit_does_not_stop_training(target, tmp_path, capsys):
    def broken():
        raise OSError("volume busy")

    with target.commit_on_checkpoint(tmp_path, broken, interval=0.01):
        pass
    assert "volume commit after the end of the attempt failed: volume busy" in capsys.readouterr().err


def test_signals_reach_the_torchrun_process(target):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with target.forward_signals(child):
            os.kill(os.getpid(), signal.SIGTERM)
            assert child.wait(10) == -signal.SIGTERM
    finally:
        child.kill()
