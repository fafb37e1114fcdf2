"""Inside a training Function: the supervised trainer (cancelled, timed out, preempted), the Volume commits,
resuming an earlier attempt's run, and continuing a run in a new call when this one's time is up."""

from __future__ import annotations

import dataclasses
import json
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
from support import wait_for
from tandem.train.checkpoint import CheckpointDir, load
from tandem.train.config import DiTTrainConfig

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore:.*executing locally")]

# A stand-in for torchrun: it starts a "rank" that ignores SIGTERM, writes a checkpoint every 50 ms, and on
# SIGTERM writes one last checkpoint (step 1000) and waits for its rank, which never ends by itself.
FAKE_TORCHRUN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    import torch
    from tandem.train.checkpoint import CheckpointDir
    checkpoints, pids = CheckpointDir(sys.argv[1]), sys.argv[2]
    rank = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open(pids, "w").write(f"{rank.pid}")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    step = 0
    while not stop:
        step += 1
        checkpoints.save({"step": step, "w": torch.full((1000,), float(step))}, step)
        time.sleep(0.05)
    checkpoints.save({"step": 1000, "w": torch.full((1000,), 1000.0)}, 1000)
    rank.wait()
    """
)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # killed, not yet reaped by its new parent


@pytest.fixture
def cancel_into_main_thread():
    """cancel() raises Modal's InputCancellation in the main thread from a signal handler, as Modal does."""
    previous = signal.signal(signal.SIGUSR1, lambda *a: (_ for _ in ()).throw(modal.exception.InputCancellation()))
    yield lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, previous)


def test_a_cancelled_attempt_leaves_no_process_and_a_complete_checkpoint(tmp_path, cancel_into_main_thread):
    run_dir, pids = tmp_path / "run", tmp_path / "pids"
    checkpoints = CheckpointDir(run_dir / "checkpoints")
    checkpoints.directory.mkdir(parents=True)
    commits = []

    def commit():
        found = checkpoints.existing()
        commits.append(found[-1][0] if found else None)

    def cancel_after_two_checkpoints():
        wait_for(lambda: len(checkpoints.existing()) >= 2 and pids.exists(), 60, "the job's checkpoints")
        cancel_into_main_thread()

    canceller = threading.Thread(target=cancel_after_two_checkpoints)
    canceller.start()
    command = [sys.executable, "-c", FAKE_TORCHRUN, str(checkpoints.directory), str(pids)]
    started = time.monotonic()
    with pytest.raises(modal.exception.InputCancellation):
        attempt.run_attempt(command, run_dir, commit, deadline=None, grace=1.0)
    canceller.join()
    rank = int(pids.read_text())
    assert gone(rank), "the rank outlived the cancelled attempt"
    assert time.monotonic() - started < 60
    step, newest = checkpoints.existing()[-1]
    assert step == 1000  # written on SIGTERM, before the kill
    assert torch.equal(load(newest)["w"], torch.full((1000,), 1000.0))
    assert commits[-1] == 1000  # the Volume is committed after the job is gone


def test_the_job_is_stopped_at_the_deadline_and_says_so(tmp_path):
    script = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(30)"
    end = attempt.run_job([sys.executable, "-c", script], time.monotonic() + 1.0, grace=5)
    assert (end.code, end.out_of_time, end.signal, end.killed) == (0, True, None, False)
    end = attempt.run_job(
        [sys.executable, "-c", "import sys; print('first', file=sys.stderr); sys.exit('tandem: bad')"], None
    )
    assert (end.code, end.out_of_time, end.last_error) == (1, False, "tandem: bad")


def test_signals_reach_the_job(tmp_path):
    script = "import time; time.sleep(30)"
    outcome = {}

    def stop_soon():
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_soon).start()
    outcome["end"] = attempt.run_job([sys.executable, "-c", script], None)
    assert (outcome["end"].code, outcome["end"].signal) == (-signal.SIGTERM, "SIGTERM")


def test_the_volume_is_committed_after_each_checkpoint_and_at_the_end(tmp_path):
    directory = CheckpointDir(tmp_path / "checkpoints")
    directory.directory.mkdir()
    commits = []
    committed = threading.Event()

    def commit():
        commits.append(sorted(step for step, _ in directory.existing()))
        committed.set()

    with attempt.commit_on_checkpoint(directory.directory, commit, interval=0.01):
        for step in (2, 4):
            committed.clear()
            directory.save({"w": torch.ones(1)}, step)
            assert committed.wait(5), f"no commit after checkpoint {step}"
    assert commits == [[2], [2, 4], [2, 4]]  # one per checkpoint, one at the end


def test_a_failed_commit_does_not_stop_training(tmp_path, capsys):
    def broken():
        raise OSError("volume busy")

    with attempt.commit_on_checkpoint(tmp_path, broken, interval=0.01):
        pass
    assert "volume commit after the end of the attempt failed: volume busy" in capsys.readouterr().err


def test_an_attempt_that_died_before_its_first_checkpoint_is_continued_and_the_trainer_starts_it_over(tmp_path, capsys):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".step_0000003.pt.tmp").write_bytes(b"torn")
    config = DiTTrainConfig(runs_dir=str(tmp_path), run_name="r", steps=6)
    (run / "config.json").write_text(json.dumps({"kind": "dit", "config": dataclasses.asdict(config)}))
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    named = attempt.name_the_run("dit", config)
    assert (named.run_name, named.resume, named.steps) == ("r", True, 6)
    from tandem.train.attempt import plan_attempt

    planned = plan_attempt("dit", named, ["steps"])  # what the trainer decides from the command
    assert (planned.action, planned.config.steps) == ("start over", 6)
    assert "has no complete checkpoint, so nothing trained to keep: starting it over from step 0" in planned.note


def test_a_new_run_is_started_under_the_name_the_entrypoint_chose(tmp_path):
    config = DiTTrainConfig(runs_dir=str(tmp_path), run_name="dit-20260101-120000")
    named = attempt.name_the_run("dit", config)
    assert (named.run_name, named.resume) == ("dit-20260101-120000", False)
    (tmp_path / "dit-20260101-120000").mkdir()  # made, but nothing in it yet: still a new run
    assert attempt.name_the_run("dit", config).resume is False


def test_a_finished_run_is_refused_by_the_trainer_unless_the_call_makes_it_longer(tmp_path, dit_flags):
    from tandem.cli import build_parser
    from tandem.errors import UsageError
    from tandem.train import run_training
    from tandem.train.flags import config_from_args, given_fields

    argv = ["train", "dit", *dit_flags, "--runs-dir", str(tmp_path), "--run-name", "done"]
    args = build_parser().parse_args(argv)
    config = config_from_args(DiTTrainConfig, args)
    run_training("dit", config, given_fields(args))
    named = attempt.name_the_run("dit", config)
    assert named.resume is True
    with pytest.raises(UsageError, match="done is complete"):
        run_training("dit", named, given_fields(args))
    longer = run_training("dit", dataclasses.replace(named, steps=config.steps + 1), given_fields(args))
    assert (longer.status, longer.step) == ("completed", config.steps + 1)


def test_the_trainer_command_reproduces_the_config():
    import argparse

    from tandem.train.flags import add_config_arguments, config_from_args
    from tandem.train.launch import Launch

    config = DiTTrainConfig(steps=7, run_name="r", runs_dir="/runs", lr=3e-4, amp=False)
    one, four = attempt.trainer_command("dit", config, Launch(1)), attempt.trainer_command("dit", config, Launch(4))
    assert one[1:5] == ["-m", "tandem", "train", "dit"]
    assert four[1:10] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
        "-m",
        "tandem",
        "train",
        "dit",
    ]
    assert one[5:] == four[10:]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, DiTTrainConfig)
    assert config_from_args(DiTTrainConfig, parser.parse_args(one[5:])) == config
    # With the user's words: those flags, and the attempt's own (where the run is, its name, resume).
    given = attempt.trainer_command("dit", config, Launch(1), given={"steps": "flag", "lr": "flag"})
    flags = [word for word in given[5:] if word.startswith("--")]
    assert flags == ["--data-dir", "--runs-dir", "--run-name", "--no-resume", "--steps", "--stop-after", "--lr"]
    assert given[given.index("--steps") + 1 : given.index("--steps") + 3] == ["7", "--stop-after"]
    assert given[given.index("--lr") + 1] == "0.0003"


def test_the_trainer_hears_where_the_settings_came_from():
    """A --config file read on the user's machine is named in the run's config.json written on Modal."""
    from tandem.cli import build_parser
    from tandem.train.flags import sources
    from tandem.train.launch import Launch

    config = DiTTrainConfig(steps=7, run_name="r", runs_dir="/runs", lr=3e-4)
    file = "config file other.toml (sha256 0123456789abcdef)"
    command = attempt.trainer_command("dit", config, Launch(1), given={"steps": "flag", "lr": file})
    assert command[-2:] == ["--setting-sources", '{"lr": "config file other.toml (sha256 0123456789abcdef)"}']
    args = build_parser().parse_args(command[3:])
    assert {k: v for k, v in sources(args).items() if k in ("steps", "lr")} == {"steps": "flag", "lr": file}


def test_a_run_outlasting_its_call_continues_in_a_new_one(tmp_path, dit_flags, in_a_container, monkeypatch):
    """A short timeout: the trainer is stopped at a checkpoint before it, and the run is handed on."""
    spawned = []

    def spawn(self, *args):
        from modal._utils.async_utils import synchronizer

        options = synchronizer._translate_in(self)._options
        spawned.append((options.resources.gpu_config.gpu_type, options.timeout_secs, args))
        return type("Call", (), {"object_id": "fc-next"})()

    monkeypatch.setattr(modal.Function, "spawn", spawn)
    flags = {**DiTTrainConfig().__dict__, "runs_dir": str(tmp_path), "data_dir": str(tmp_path / "data")}
    config = {**flags, "run_name": "long", "steps": 100000, "checkpoint_every": 50, "sample_every": 0,
              "batch_size": 8, "device": "cpu"}  # fmt: skip
    place = placement("T4", 1, 40, functions.settings)  # stopped at 36 s: time to start the trainer on a busy CPU
    result = functions.train_dit.local(config, place.as_dict())
    assert result["status"] == "continued" and result["call_id"] == "fc-next"
    ((gpu, timeout, (next_config, next_place, next_given)),) = spawned
    assert (gpu, timeout, next_place, next_given) == ("T4", 40, place.as_dict(), None)
    assert next_config == {**config, "resume": True}
    assert 0 < result["step"] < 100000 and CheckpointDir(tmp_path / "long" / "checkpoints").existing()
    assert in_a_container  # committed


def test_a_run_stopped_by_a_signal_raises_so_modal_retries_it(tmp_path, in_a_container, monkeypatch):
    config = {**DiTTrainConfig().__dict__, "runs_dir": str(tmp_path), "run_name": "s", "steps": 100000,
              "checkpoint_every": 5, "batch_size": 8, "device": "cpu"}  # fmt: skip
    place = placement("T4", 1, 3600, functions.settings)

    def preempt_soon():
        wait_for(lambda: CheckpointDir(tmp_path / "s" / "checkpoints").existing(), 120, "a checkpoint")
        os.kill(os.getpid(), signal.SIGINT)  # what Modal sends a preempted container

    threading.Thread(target=preempt_soon, daemon=True).start()
    with pytest.raises(attempt.RunInterrupted, match="stopped at step .* by SIGINT"):
        functions.train_dit.local(config, place.as_dict())


def test_bad_input_inside_the_call_is_reported_not_retried(tmp_path, in_a_container):
    config = {**DiTTrainConfig().__dict__, "runs_dir": str(tmp_path), "run_name": "b", "dataset": "imagefolder",
              "folder": str(tmp_path / "missing"), "image_size": 8, "device": "cpu"}  # fmt: skip
    result = functions.train_dit.local(config, placement("T4", 1, 3600, functions.settings).as_dict())
    assert result["status"] == "error" and "missing" in result["message"]


def test_the_stop_comes_a_tenth_of_the_timeout_early_at_most_ten_minutes():
    assert (attempt.stop_margin(40), attempt.stop_margin(3600), attempt.stop_margin(4 * 3600)) == (4.0, 360.0, 600.0)
