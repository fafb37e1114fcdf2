"""A `--gpus 2` training call with the real launcher: `torch.distributed.run` starting 2 gloo ranks on the
CPU, supervised as on Modal (not local: a deadline, Volume commits replaced at the client boundary).

A call whose time runs out continues in a spawned call and ends bitwise where an uninterrupted run ends;
Modal's preemption (SIGINT, SIGKILL 30 s later) ends the attempt with a checkpoint and no process left;
a rank that ignores the stop is killed after the grace."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import modal
import pytest
import torch

from modal_app import functions
from modal_app import supervisor as attempt
from modal_app.resources import placement
from support import job_pids, wait_for
from tandem.train.checkpoint import CheckpointDir, load
from tandem.train.config import DiTTrainConfig

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore:.*executing locally")]

# A small DiT, so that two ranks on two shared cores take seconds per call.
SMALL_DIT = {"depth": 2, "hidden_size": 32, "heads": 2, "patch_size": 4, "batch_size": 16, "warmup_steps": 2,
             "log_every": 1, "checkpoint_every": 5, "sample_every": 0, "samples_per_class": 1, "sample_steps": 2,
             "solver": "euler", "device": "cpu", "deterministic": True, "cpu_threads": 1, "loggers": "none"}  # fmt: skip


@pytest.fixture
def spawned(monkeypatch):
    """`.spawn` of a Function, recorded as Modal would receive it: (function tag, gpu spec, timeout, args)."""
    from modal._utils.async_utils import synchronizer

    sent = []

    def spawn(self, *args):
        raw = synchronizer._translate_in(self)
        gpu = raw._options.resources.gpu_config
        sent.append((raw._tag, f"{gpu.gpu_type}:{gpu.count}", raw._options.timeout_secs, args))
        return type("Call", (), {"object_id": f"fc-{len(sent)}"})()

    monkeypatch.setattr(modal.Function, "spawn", spawn)
    return sent


def dit_config(tmp_path: Path, run_name: str, steps: int) -> dict:
    return {**DiTTrainConfig().__dict__, **SMALL_DIT, "runs_dir": str(tmp_path / "runs"),
            "data_dir": str(tmp_path / "data"), "run_name": run_name, "steps": steps}  # fmt: skip


def final_weights(tmp_path: Path, run_name: str) -> dict:
    step, path = CheckpointDir(tmp_path / "runs" / run_name / "checkpoints").existing()[-1]
    state = load(path)
    return {"step": step, "model": state["model"], "ema": state["ema"]}


def hold_after_first_checkpoint(run_dir: Path, run_name: str, until: float) -> threading.Thread:
    """Pause the whole job (SIGSTOP) once it has a checkpoint, until `until` (monotonic) has passed: the
    call's deadline then falls in the middle of the run, however fast this machine trains."""

    def hold():
        checkpoints = CheckpointDir(run_dir / "checkpoints")
        wait_for(lambda: checkpoints.directory.is_dir() and checkpoints.existing(), 300, "the first checkpoint")
        pids = job_pids(run_name)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        while time.monotonic() < until:
            time.sleep(0.1)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_a_two_rank_run_out_of_time_continues_and_ends_as_an_uninterrupted_one(tmp_path, in_a_container, spawned):
    steps = 30
    # The uninterrupted run first: how long two ranks take to reach a checkpoint here sets the timeout,
    # so that the deadline lands mid-run on a fast machine and a busy one alike.
    checkpoints = CheckpointDir(tmp_path / "runs" / "straight" / "checkpoints")
    first_checkpoint = {}
    started = time.monotonic()

    def watch():
        wait_for(lambda: checkpoints.directory.is_dir() and checkpoints.existing(), 300, "the first checkpoint")
        first_checkpoint["after"] = time.monotonic() - started

    threading.Thread(target=watch, daemon=True).start()
    reference = functions.train_dit.local(
        dit_config(tmp_path, "straight", steps), placement("T4", 2, 3600, functions.settings).as_dict()
    )
    assert (reference["status"], reference["step"]) == ("completed", steps)
    timeout = int(2 * first_checkpoint["after"] / 0.9) + 10

    place = placement("T4", 2, timeout, functions.settings)
    config = dit_config(tmp_path, "chained", steps)
    started = time.monotonic()
    holder = hold_after_first_checkpoint(tmp_path / "runs" / "chained", "chained", started + timeout * 0.9 + 2)
    result = functions.train_dit.local(config, place.as_dict())
    holder.join()
    assert result["status"] == "continued", result
    assert 0 < result["step"] < steps
    ((tag, gpu, sent_timeout, (next_config, next_place, next_given)),) = spawned
    assert (tag, gpu, sent_timeout, next_place, next_given) == ("train_dit", "T4:2", timeout, place.as_dict(), None)
    assert next_config == {**config, "resume": True}
    assert job_pids("chained") == []  # nothing of the first call's job is left

    calls = 1
    while result["status"] == "continued":  # what Modal does with each spawned call
        result = functions.train_dit.local(*spawned[-1][3])
        calls += 1
        assert calls < 6, "the run does not progress from call to call"
    assert (result["status"], result["step"]) == ("completed", steps)

    chained, straight = final_weights(tmp_path, "chained"), final_weights(tmp_path, "straight")
    assert chained["step"] == straight["step"] == steps
    for part in ("model", "ema"):
        assert_same(chained[part], straight[part], part)


def assert_same(got, expected, where: str) -> None:
    """Bitwise equal, through nested dicts of tensors and numbers."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key, value in expected.items():
            assert_same(got[key], value, f"{where}.{key}")
    elif torch.is_tensor(expected):
        assert torch.equal(got, expected), f"{where} differs from the uninterrupted run"
    else:
        assert got == expected, f"{where} differs from the uninterrupted run"


def test_preemption_of_a_two_rank_attempt_checkpoints_within_the_grace_and_raises_for_a_retry(tmp_path, in_a_container):
    config = dit_config(tmp_path, "preempted", 100000)
    checkpoints = CheckpointDir(tmp_path / "runs" / "preempted" / "checkpoints")
    sent = {}

    def preempt():
        wait_for(lambda: checkpoints.directory.is_dir() and checkpoints.existing(), 300, "the first checkpoint")
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)  # Modal's preemption; its SIGKILL comes 30 s later

    threading.Thread(target=preempt, daemon=True).start()
    with pytest.raises(attempt.RunInterrupted, match=r"stopped at step \d+ by SIGINT"):
        functions.train_dit.local(config, placement("T4", 2, 3600, functions.settings).as_dict())
    ended = time.monotonic()
    assert ended - sent["at"] < attempt.MODAL_KILL_AFTER, "the attempt outlived Modal's kill"
    assert in_a_container and in_a_container[-1] >= sent["at"]  # committed after the stop
    assert job_pids("preempted") == []
    step, newest = checkpoints.existing()[-1]
    assert load(newest)["step"] == step > 0  # the stop's checkpoint is whole


STUCK_RANK = textwrap.dedent(
    """
    import os, signal, sys, time
    if os.environ["RANK"] == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a rank stuck in a collective, deaf to the stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    open(sys.argv[1] + os.environ["RANK"], "w").close()  # ready: its handlers are in place
    time.sleep(600)
    """
)


def test_a_rank_that_ignores_the_stop_is_killed_after_the_grace_and_nothing_is_left(tmp_path):
    script = tmp_path / "stuck_rank_job.py"
    script.write_text(STUCK_RANK)
    ready = tmp_path / "ready-"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
        str(ready),
    ]
    grace, sent = 3.0, {}

    def preempt():
        wait_for(lambda: all(Path(f"{ready}{rank}").exists() for rank in (0, 1)), 60, "both ranks")
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=preempt, daemon=True).start()
    end = attempt.run_job(command, deadline=None, grace=grace)
    took = time.monotonic() - sent["at"]
    assert (end.signal, end.killed) == ("SIGINT", True)
    assert grace <= took < grace + 10
    wait_for(lambda: job_pids(str(script)) == [], 10, "every process of the job to be gone")


def test_the_grace_leaves_time_to_commit_before_modals_kill():
    assert attempt.STOP_GRACE + attempt.COMMIT_RESERVE <= attempt.MODAL_KILL_AFTER == 30.0
    assert attempt.COMMIT_RESERVE >= 5.0
