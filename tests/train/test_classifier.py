import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tandem.errors import UsageError
from tandem.train import checkpoint, run_training
from tandem.train import classifier as classifier_module

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

TRAINING_STATE = ("model", "optimizer", "scheduler", "rng", "step")


def final(result) -> dict:
    return checkpoint.load(Path(result.checkpoint))


def test_interrupted_mid_epoch_and_resumed_is_bitwise_equal(classifier_config, states_equal):
    full = run_training("classifier", classifier_config(run_name="full"))
    assert full.status == "completed" and full.step == 10  # 2 epochs x 5 steps

    first = run_training("classifier", classifier_config(run_name="resumed", stop_after=7))
    assert first.status == "stopped" and first.step == 7
    second = run_training("classifier", classifier_config(run_name="resumed", resume=True))
    assert second.step == 10

    for key in TRAINING_STATE:
        states_equal(final(full)[key], final(second)[key], key)  # includes the BatchNorm running stats
    assert second.metrics["test_acc"] == full.metrics["test_acc"]


def test_validation_every_epoch_keeps_the_best_and_the_test_set_is_scored_once(classifier_config):
    result = run_training("classifier", classifier_config(epochs=3))
    run = Path(result.run_dir)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "val_acc" in r and not r.get("final")]
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 5), (2, 10), (3, 15)]  # 1,295 images left: 5 steps
    assert [r for r in records if "test_acc" in r] == [records[-1]]  # the final record, once
    best = max(reversed(epochs), key=lambda r: r["val_acc"])  # the last of equals: trained longest
    assert (result.metrics["val_acc"], result.metrics["best_step"]) == (best["val_acc"], best["step"])
    assert 0.5 <= result.metrics["test_acc"] <= 1
    kept = checkpoint.load(run / "checkpoints" / "best.pt")
    assert kept["step"] == best["step"] and kept["best"] == {"val_acc": best["val_acc"], "step": best["step"]}
    assert "optimizer" not in kept  # what scoring needs: weights, preprocessing, the model's settings
    with Image.open(run / "loss_curve.png") as png:
        assert png.format == "PNG"
    state = final(result)
    assert state["kind"] == "classifier" and state["identity"]["dataset"] == "digits"
    assert len(state["preprocess"]["mean"]) == 1  # digits: one channel
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == {"train": 1295, "validation": 142, "test": 360}
    assert config["config"]["val_fraction"] == 0.1


def test_no_validation_split_scores_the_final_weights(classifier_config):
    result = run_training("classifier", classifier_config(epochs=1, val_fraction=0.0))
    assert set(result.metrics) == {"test_acc"}
    assert not (Path(result.run_dir) / "checkpoints" / "best.pt").exists()


def test_a_model_that_cannot_fit_is_refused_before_it_is_built(classifier_config):
    c = classifier_config(width=100_000)
    model_config = {"arch": "airbench", "num_classes": 10, "in_channels": 1, "image_size": 8, "width": 100_000}
    with pytest.raises(UsageError) as error:
        classifier_module.check_model_memory(c, model_config, torch.device("cpu"))
    message = str(error.value)
    assert message.startswith(
        "the classifier of --arch airbench --width 100000 (4,770,014,800,040 parameters) needs at least 57.2 TB"
    )
    assert message.endswith("; pass a smaller --width")
    classifier_module.check_model_memory(classifier_config(), {**model_config, "width": 8}, torch.device("cpu"))
