"""Quality bars on digits. The slow tests train with the defaults (what `tandem train` does with no
flags); the short ones run in CI with fewer steps and lower bars."""

import json
from pathlib import Path

import pytest

from tandem.cli import main
from tandem.train import run_training
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

SHORT_CLASSIFIER = dict(width=16, epochs=5, lr=0.1)  # a short schedule takes a higher rate
# Fewer steps; a shorter EMA and stronger guidance make up for some of them.
SHORT_DIT = dict(steps=250, ema_decay=0.98, cfg_scale=2.0, sample_steps=8)


@pytest.fixture(scope="module")
def short_classifier(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return run_training("classifier", ClassifierTrainConfig(runs_dir=str(runs), device="cpu", **SHORT_CLASSIFIER))


def test_short_classifier_run(short_classifier):
    assert short_classifier.metrics["test_acc"] >= 0.95


def test_short_dit_run_makes_recognisable_digits(short_classifier, tmp_path):
    config = DiTTrainConfig(
        runs_dir=str(tmp_path), device="cpu", classifier_checkpoint=short_classifier.checkpoint, **SHORT_DIT
    )
    metrics = run_training("dit", config).metrics
    assert metrics["sample_acc"] >= 0.8, metrics
    assert metrics["fd"] <= 5 * metrics["fd_floor"], metrics


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_metrics(run_dir: Path) -> dict:
    return read_metrics(run_dir)[-1]


@pytest.mark.slow
def test_default_runs_meet_the_quality_bars(tmp_path):
    """`tandem train classifier` then `tandem train dit --classifier-checkpoint ...`, defaults otherwise."""
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert main(["train", "classifier", *dirs, "--run-name", "classifier"]) == 0
    classifier = final_metrics(tmp_path / "runs" / "classifier")
    assert classifier["test_acc"] >= 0.993, classifier
    assert any(r.get("val_acc", 0) >= 0.98 for r in read_metrics(tmp_path / "runs" / "classifier"))

    # the classifier run by name: its best checkpoint judges the samples
    assert main(["train", "dit", *dirs, "--run-name", "dit", "--classifier-checkpoint", "classifier"]) == 0
    dit = final_metrics(tmp_path / "runs" / "dit")
    assert dit["sample_acc"] >= 0.995, dit
    assert dit["fd"] <= 1.3 * dit["fd_floor"], dit
    assert list((tmp_path / "runs" / "dit" / "samples").glob("step_*.png"))
