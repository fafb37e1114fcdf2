"""The entrypoint's local fallback (`python modal_app/train.py ... --local`): the Functions' bodies run here,
through the same supervised trainer as on Modal, and write what the local CLI writes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from modal_app.launch import launch
from support import REPO
from tandem.cli import main as tandem
from tandem.train.checkpoint import CheckpointDir, load
from tandem.train.config import DiTTrainConfig
from tandem.train.run import RunDir

pytestmark = [pytest.mark.training, pytest.mark.filterwarnings("ignore:.*executing locally")]


def listing(run_dir: Path) -> list[str]:
    # TensorBoard names its event files after the time, host and process: only their presence compares
    names = (re.sub(r"tfevents\..*", "tfevents.*", p.relative_to(run_dir).as_posix()) for p in run_dir.rglob("*"))
    return sorted(names)


def final_model(run_dir: Path) -> dict:
    return load(CheckpointDir(run_dir / "checkpoints").existing()[-1][1])["model"]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def dit_run(dirs, dit_flags, capsys):
    """A DiT trained through the entrypoint's local fallback; returns its run dir."""
    assert launch(["dit", *dit_flags, "--run-name", "app", "--local"], app_running=False) == 0
    assert capsys.readouterr().out.startswith("target: this machine (--local was given)\n")
    return dirs["runs"] / "app"


def test_dit_function_writes_what_tandem_train_writes(dit_run, dirs, dit_flags):
    assert tandem(["train", "dit", *dit_flags, "--run-name", "cli"]) == 0
    cli_run = dirs["runs"] / "cli"
    assert listing(dit_run) == listing(cli_run)
    assert "samples/step_0000006.png" in listing(dit_run)
    ours, theirs = (RunDir(r).metrics_path.read_text() for r in (dit_run, cli_run))
    assert [sorted(json.loads(line)) for line in ours.splitlines()] == [
        sorted(json.loads(line)) for line in theirs.splitlines()
    ]
    assert same_tensors(final_model(dit_run), final_model(cli_run))  # the same trainer, deterministic
    # and what people look at is copied to outputs/<run>/, checkpoints left where they are
    assert listing(dirs["outputs"] / "app") == [
        "config.json",
        "events.out.tfevents.*",  # TensorBoard's, in the run directory: `tensorboard --logdir runs` names it
        "loss_curve.png",
        "metrics.jsonl",
        "samples",
        "samples/latest.png",
        "samples/step_0000006.png",
    ]


def test_a_finished_run_is_not_extended_by_the_same_command(dit_run, dit_flags, capsys):
    """Run again with only its name, the finished run is refused (it would train on to the default
    --steps otherwise) and keeps its checkpoints."""
    before = sorted(p.name for p in (dit_run / "checkpoints").iterdir())
    assert launch(["dit", "--run-name", "app", "--device", "cpu", "--local"], app_running=False) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "app" in err[0], err
    assert sorted(p.name for p in (dit_run / "checkpoints").iterdir()) == before


def test_sample_function_is_tandem_sample(dit_run, dirs, capsys):
    words = ["sample", "--run", str(dit_run), "--samples-per-class", "1", "--sample-steps", "2", "--local"]
    assert launch(words, app_running=False) == 0
    grid = f"samples/sample_step_0000006_euler_2steps_cfg{DiTTrainConfig().cfg_scale:g}_seed0_1per-class.png"
    assert (dit_run / grid).is_file()
    assert (dirs["outputs"] / "app" / grid).is_file()
    assert launch(["sample", "--run", str(dirs["runs"] / "nothing"), "--local"], app_running=False) == 2
    assert "nothing: no such directory; pass a run directory, a run's name or latest" in capsys.readouterr().err


def test_classifier_over_two_ranks_through_torchrun(dirs, classifier_flags, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    words = ["classifier", *classifier_flags, "--epochs", "1", "--run-name", "ddp", "--gpus", "2", "--local"]
    assert launch(words, app_running=False) == 0
    assert "classifier completed at step" in capsys.readouterr().out
    config = json.loads((dirs["runs"] / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2
    final = [json.loads(line) for line in (dirs["runs"] / "ddp" / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["final"] and "test_acc" in final and len(final["rank_weight_digests"]) == 2


def test_check_function_writes_the_fingerprint_tandem_check_writes(checked):
    runs, fingerprint = checked
    saved = json.loads((runs / "fingerprints" / "modal-test.json").read_text())
    assert saved == fingerprint
    assert fingerprint["label"] == "modal-test"
    assert {"environment", "cpu", "gpu"} <= set(fingerprint)
    assert fingerprint["environment"]["env"]["OMP_NUM_THREADS"] == "4"  # from the settings, as in the images
    assert tandem(["check", "--compare", *[str(runs / "fingerprints" / "modal-test.json")] * 2]) == 0


def descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (kids := children.get(todo.pop(), []))
        todo += kids
    return found


def test_a_killed_call_called_again_resumes_and_matches_an_uninterrupted_run(dirs, classifier_flags, capfd, tmp_path):
    flags = ["classifier", *classifier_flags, "--epochs", "4", "--checkpoint-every", "4", "--seed", "3", "--local"]

    # The first attempt dies hard with all its processes (as a container does: no handler, no final
    # checkpoint) right after its first checkpoint; a thread watches for it while the whole run trains here.
    checkpoints = CheckpointDir(dirs["runs"] / "cut" / "checkpoints")
    first = subprocess.Popen(
        [sys.executable, str(REPO / "modal_app" / "train.py"), *flags, "--run-name", "cut"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill_after_first_checkpoint():
        deadline = time.monotonic() + 180
        while not checkpoints.existing() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in [*descendants(first.pid), first.pid]:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    try:
        assert launch([*flags, "--run-name", "whole"], app_running=False) == 0
    finally:
        killer.join()
        first.wait()
    assert first.returncode == -signal.SIGKILL, "the first attempt ended before it was killed"
    assert checkpoints.existing()[-1][0] < CheckpointDir(dirs["runs"] / "whole" / "checkpoints").existing()[-1][0]

    # The same call again (what Modal's retry or restart does) continues it: the trainer says so.
    capfd.readouterr()
    assert launch([*flags, "--run-name", "cut"], app_running=False) == 0
    assert f"resuming {dirs['runs'] / 'cut'} from step_" in capfd.readouterr().out
    assert same_tensors(final_model(dirs["runs"] / "whole"), final_model(dirs["runs"] / "cut"))


def test_a_run_stopped_here_says_how_to_continue(dirs, classifier_flags, capsys):
    words = ["classifier", *classifier_flags, "--epochs", "2", "--run-name", "s", "--local"]

    def interrupt_at_first_checkpoint():
        deadline = time.monotonic() + 180
        while not CheckpointDir(dirs["runs"] / "s" / "checkpoints").existing() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    threading.Thread(target=interrupt_at_first_checkpoint, daemon=True).start()
    assert launch([*words, "--checkpoint-every", "1"], app_running=False) == 1
    assert "run the same command with --run-name s to continue" in capsys.readouterr().err


def test_python_with_credentials_detaches_on_modal(with_credentials, modal_cli, dirs, monkeypatch, capsys):
    """`python modal_app/train.py dit --detach`: the app started detached, the run spawned with its options."""
    import contextlib

    import modal

    started = []
    monkeypatch.setattr(modal.App, "run", lambda self, **kwargs: started.append(kwargs) or contextlib.nullcontext())
    assert launch(["dit", "--detach", "--gpu", "l40s", "--timeout", "600", "--run-name", "d"], app_running=False) == 0
    assert started == [{"detach": True}]
    ((how, function, gpu, timeout, config),) = [
        (s.how, s.function, s.gpu, s.timeout, s.args[0]) for s in modal_cli.sent
    ]
    assert (how, function, gpu, timeout, config["run_name"], config["runs_dir"]) == (
        "spawn", "train_dit", "L40S", 600, "d", "/runs",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "started dit run d as call fc-test" in out and "fetch:   modal run modal_app/train.py fetch d" in out


def test_without_credentials_the_entrypoint_runs_here_and_says_why(no_credentials):
    from modal_app.launch import choose_target

    where, why = choose_target(local=False, app_running=False)
    assert where == "local" and "no Modal credentials" in why and "modal token new" in why
    assert choose_target(local=True, app_running=True) == ("local", "--local was given")
    assert choose_target(local=False, app_running=True)[0] == "modal"


def test_with_credentials_the_entrypoint_goes_to_modal(with_credentials):
    from modal_app.launch import choose_target

    assert choose_target(local=False, app_running=False) == (
        "modal",
        "Modal credentials found: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set",
    )


def test_sample_by_run_name_here_as_on_modal(dit_run, dirs, monkeypatch):
    """The README's form, `sample --run <name>`, finds the run in the runs directory here too."""
    monkeypatch.chdir(dirs["outputs"].parent)
    words = ["sample", "--run", dit_run.name, "--samples-per-class", "1", "--sample-steps", "2", "--local"]
    assert launch(words, app_running=False) == 0
    grid = f"samples/sample_step_0000006_euler_2steps_cfg{DiTTrainConfig().cfg_scale:g}_seed0_1per-class.png"
    assert (dit_run / grid).is_file() and (dirs["outputs"] / dit_run.name / grid).is_file()
