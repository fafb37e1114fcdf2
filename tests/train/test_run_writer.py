"""config.json as the run writer leaves it: the settings as trained (every 0 / None default replaced by what
the run chose) and where each came from (a flag, a --config file and its digest, the device, the preset)."""

import hashlib
import json

import pytest

from tandem.cli import main
from tandem.train import checkpoint, run_training

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`


def record(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


@pytest.fixture
def few_flags(runs_dir, data_dir):
    """A one-step DiT on the CPU, with the model's shape and the batch size left to their defaults."""
    return [
        "--steps", "1", "--device", "cpu", "--sample-every", "0", "--samples-per-class", "2", "--sample-steps", "2",
        "--loggers", "none", "--runs-dir", str(runs_dir), "--data-dir", str(data_dir),
    ]  # fmt: skip


def test_config_json_holds_what_was_trained_and_where_each_setting_came_from(few_flags, runs_dir):
    assert main(["train", "dit", *few_flags, "--run-name", "r", "--lr", "0.001"]) == 0
    saved = record(runs_dir / "r")
    config, sources = saved["config"], saved["sources"]
    assert (config["depth"], config["hidden_size"], config["heads"], config["image_size"]) == (6, 192, 6, 8)
    assert (config["batch_size"], config["log_every"], config["compile"]) == (64, 10, False)
    assert {k: saved["model"][k] for k in ("depth", "hidden_size", "num_heads")} == {
        "depth": 6,
        "hidden_size": 192,
        "num_heads": 6,
    }
    assert saved["total_steps"] == 1
    assert {k: sources[k] for k in ("depth", "hidden_size", "heads", "image_size", "batch_size", "lr", "seed")} == {
        "depth": "chosen by --size tiny",
        "hidden_size": "chosen by --size tiny",
        "heads": "chosen by --size tiny",
        "image_size": "chosen by the dataset",
        "batch_size": "chosen by the device (cpu)",
        "lr": "flag",
        "seed": "default",
    }
    assert (sources["steps"], sources["epochs"]) == ("flag", "flag")  # --steps alone: no epoch limit
    assert set(sources) == set(config)


def test_a_config_file_is_named_with_its_digest_and_chosen_settings_are_chosen_anew(few_flags, runs_dir, tmp_path):
    toml = tmp_path / "other.toml"
    toml.write_text("lr = 0.0005\nwarmup_steps = 3\n")
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()[:16]
    assert main(["train", "dit", *few_flags, "--run-name", "t", "--config", str(toml), "--warmup-steps", "5"]) == 0
    saved = record(runs_dir / "t")
    assert saved["config"]["lr"] == 0.0005 and saved["config"]["warmup_steps"] == 5
    assert saved["sources"]["lr"] == f"config file {toml} (sha256 {digest})"
    assert saved["sources"]["warmup_steps"] == "flag"  # the flag typed wins over the file

    # a run's directory as --config: its settings, but a new preset's shape is that preset's
    assert main(["train", "dit", *few_flags, "--run-name", "u", "--config", str(runs_dir / "t"), "--size", "S"]) == 0
    saved = record(runs_dir / "u")
    assert (saved["config"]["depth"], saved["config"]["hidden_size"], saved["config"]["lr"]) == (12, 384, 0.0005)
    assert saved["sources"]["depth"] == "chosen by --size S"
    assert saved["sources"]["lr"].startswith(f"config file {runs_dir / 't' / 'config.json'} (sha256 ")


def test_a_checkpoint_from_before_shapes_were_recorded_still_resumes(few_flags, runs_dir):
    assert main(["train", "dit", *few_flags, "--run-name", "old"]) == 0
    run = runs_dir / "old"
    (path,) = (run / "checkpoints").glob("step_*.pt")
    state = checkpoint.load(path)
    state["identity"] = {**state["identity"], "depth": None, "hidden_size": None, "num_heads": None}
    # as older versions wrote the settings, in the checkpoint and config.json alike: the DiT's --width,
    # 0 for the preset's shape, no --epochs
    old = {k: v for k, v in state["config"].items() if k not in ("hidden_size", "epochs")}
    old.update(depth=0, width=0, heads=0)
    state["config"] = old
    checkpoint.save(state, path)
    saved = record(run)
    saved["config"] = old
    del saved["sources"]
    (run / "config.json").write_text(json.dumps(saved))

    assert main(["train", "dit", "--resume", "--run-name", "old", "--steps", "2", "--runs-dir", str(runs_dir)]) == 0
    assert record(run)["config"]["depth"] == 6 and record(run)["changes"][0]["setting"] == "steps"


def test_the_classifier_records_its_width(classifier_config, runs_dir):
    result = run_training("classifier", classifier_config(run_name="c", width=0, epochs=1, batch_size=512))
    saved = record(runs_dir / "c")
    assert saved["config"]["width"] == saved["model"]["width"] == 32
    assert saved["sources"]["width"] == "chosen by --arch airbench for 8px images"
    assert saved["sources"]["lr"] == "set by the caller"  # run_training given a whole config
    assert result.status == "completed"
