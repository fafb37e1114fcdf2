"""The Functions' bodies, run here (`.local()`, as the local fallback does): the same artefacts as the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from modal_launch import launch

from tandem.cli import main as tandem
from tandem.train.checkpoint import CheckpointDir, load


def listing(run_dir: Path) -> list[str]:
    # TensorBoard names its event files after the time, host and process: only their presence compares
    names = (re.sub(r"tfevents\..*", "tfevents.*", p.relative_to(run_dir).as_posix()) for p in run_dir.rglob("*"))
    return sorted(names)


def final_model(run_dir: Path) -> dict:
    return load(CheckpointDir(run_dir / "checkpoints").existing()[-1][1])["model"]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def dit_run(target, dirs, dit_flags, capsys):
    """A DiT trained through the entrypoint's local fallback; returns its run dir."""
    assert launch(target, ["dit", *dit_flags, "--run-name", "app", "--local"], app_running=False) == 0
    out = capsys.readouterr().out
    assert out.startswith("target: this machine (--local was given)\n")
    return dirs["runs"] / "app"


def test_dit_function_writes_what_tandem_train_writes(dit_run, dirs, dit_flags):
    assert tandem(["train", "dit", *dit_flags, "--run-name", "cli"]) == 0
    cli_run = dirs["runs"] / "cli"
    assert listing(dit_run) == listing(cli_run)
    assert "samples/step_0000006.png" in listing(dit_run)
    ours, theirs = (r.metrics_path.read_text() for r in map(_run, (dit_run, cli_run)))
    assert [sorted(json.loads(line)) for line in ours.splitlines()] == [
        sorted(json.loads(line)) for line in theirs.splitlines()
    ]
    assert same_tensors(final_model(dit_run), final_model(cli_run))  # the same trainer, deterministic
    # and what people look at is copied to outputs/<run>/, checkpoints left where they are
    assert listing(dirs["outputs"] / "app") == [
        "config.json",
        "loss_curve.png",
        "metrics.jsonl",
        "samples",
        "samples/latest.png",
        "samples/step_0000006.png",
    ]


@pytest.mark.filterwarnings("ignore:.*executing locally")
def test_classifier_function_returns_what_run_training_returns(target, dirs, classifier_flags):
    from modal_flags import build_parser
    from modal_launch import training_config

    parser = build_parser(target.settings.modal_gpu, target.TRAIN_TIMEOUT, target.SHORT_TIMEOUT)
    args = parser.parse_args(["classifier", *classifier_flags, "--epochs", "1", "--run-name", "c"])
    config = training_config(target, args, "local")
    result = target.train_classifier.local(config.__dict__, 1)
    assert result["status"] == "completed" and result["run_dir"] == str(dirs["runs"] / "c")
    assert {"kind", "run_dir", "status", "step", "metrics", "checkpoint", "artifacts"} == set(result)
    assert "test_acc" in result["metrics"]


def test_sample_function_is_tandem_sample(target, dit_run, dirs, capsys):
    words = ["sample", "--run", str(dit_run), "--samples-per-class", "1", "--sample-steps", "2", "--local"]
    assert launch(target, words, app_running=False) == 0
    grid = "samples/sample_step_0000006_euler_2steps_cfg1.5_seed0.png"
    assert (dit_run / grid).is_file()
    assert (dirs["outputs"] / "app" / grid).is_file()
    assert launch(target, ["sample", "--run", str(dirs["runs"] / "nothing"), "--local"], app_running=False) == 2
    assert "no usable checkpoint" in capsys.readouterr().err


def test_check_function_writes_the_fingerprint_tandem_check_writes(checked):
    runs, fingerprint = checked
    saved = json.loads((runs / "fingerprints" / "modal-test.json").read_text())
    assert saved == fingerprint
    assert fingerprint["label"] == "modal-test"
    assert {"environment", "cpu", "gpu"} <= set(fingerprint)
    assert tandem(["check", "--compare", *[str(runs / "fingerprints" / "modal-test.json")] * 2]) == 0


def _run(path: Path):
    from tandem.train.run import RunDir

    return RunDir(path)
