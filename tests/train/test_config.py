import argparse
import dataclasses

import pytest

from tandem.choices import SOLVERS, TIMESTEP_SCHEDULES
from tandem.data import DATASETS
from tandem.models import ARCHS, DIT_SIZES
from tandem.train.config import (
    CONFIGS,
    ClassifierTrainConfig,
    DiTTrainConfig,
    TrainConfig,
    config_from_dict,
    resolve_for_device,
)
from tandem.train.flags import add_config_arguments


def _parser(cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_config_arguments(parser, cls)
    return parser


def test_config_from_dict_ignores_unknown_keys():
    c = config_from_dict(DiTTrainConfig, {**dataclasses.asdict(DiTTrainConfig(steps=3)), "gone": 1})
    assert c.steps == 3


def test_data_and_runs_dirs_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TANDEM_DATA_DIR", "/data")
    monkeypatch.setenv("TANDEM_RUNS_DIR", "/runs")
    assert (DiTTrainConfig().data_dir, DiTTrainConfig().runs_dir) == ("/data", "/runs")
    args = _parser(DiTTrainConfig).parse_args([])
    assert (args.data_dir, args.runs_dir) == ("/data", "/runs")
    monkeypatch.delenv("TANDEM_DATA_DIR")
    monkeypatch.delenv("TANDEM_RUNS_DIR")
    assert (DiTTrainConfig().data_dir, DiTTrainConfig().runs_dir) == ("./data", "./runs")


def test_help_names_every_choice_the_code_accepts():
    """The choices listed in help texts must match the registries they are checked against."""
    dataset_help = TrainConfig.__dataclass_fields__["dataset"].metadata["help"]
    assert all(name in dataset_help for name in DATASETS)
    arch_help = ClassifierTrainConfig.__dataclass_fields__["arch"].metadata["help"]
    assert all(name in arch_help for name in ARCHS)
    size_help = DiTTrainConfig.__dataclass_fields__["size"].metadata["help"]
    assert all(name in size_help for name in DIT_SIZES)
    assert SOLVERS == ("euler", "heun")
    assert TIMESTEP_SCHEDULES == ("logit-normal", "uniform")


@pytest.mark.parametrize(
    "kind, device, expected",
    [
        ("dit", "cuda", dict(batch_size=256, log_every=50, compile=True)),
        ("classifier", "cuda", dict(batch_size=1024, log_every=50, compile=True)),
        ("dit", "cpu", dict(batch_size=64, log_every=10, compile=False)),
        ("classifier", "mps", dict(batch_size=128, log_every=10, compile=False)),
    ],
)
def test_device_defaults_fill_only_what_was_left_to_the_device(kind, device, expected):
    config, chosen = resolve_for_device(kind, CONFIGS[kind](), device, train_images=100_000)
    assert chosen == expected
    assert {k: getattr(config, k) for k in expected} == expected
    given = CONFIGS[kind](batch_size=7, log_every=3, compile=False)
    assert resolve_for_device(kind, given, device, train_images=100_000) == (given, {})


def test_a_default_batch_leaves_an_epoch_at_least_ten_batches_and_splits_over_the_ranks():
    # digits: 1,437 training images hold 11 batches of 128, not 10 of 256
    assert resolve_for_device("classifier", ClassifierTrainConfig(), "cuda", 1, 1437)[1]["batch_size"] == 128
    assert resolve_for_device("dit", DiTTrainConfig(), "cuda", 1, 50_000)[1]["batch_size"] == 256
    assert resolve_for_device("classifier", ClassifierTrainConfig(), "cuda", 3, 50_000)[1]["batch_size"] == 1023
    assert resolve_for_device("dit", DiTTrainConfig(), "cpu", 1, 5)[1]["batch_size"] == 1


def test_help_names_each_device_default():
    text = _parser(DiTTrainConfig).format_help()
    assert "0: the device's default, 64 on CPU and 256 on CUDA" in " ".join(text.split())
    assert "default: on CUDA, off on other devices" in " ".join(text.split())
    assert "10 on CPU, 50 on CUDA" in " ".join(text.split())


def test_the_measured_digits_recipes_are_the_defaults():
    """benchmarks/quality.py measured these on 3 seeds (docs/benchmarks.md, "Training quality"): a change
    to any of them is measured there first, then changed here."""
    dit = DiTTrainConfig()
    recipe = (dit.size, dit.patch_size, dit.steps, dit.lr, dit.warmup_steps, dit.lr_schedule, dit.ema_decay)
    assert recipe == ("tiny", 4, 600, 3e-3, 20, "cosine", 0.99)
    sampling = (dit.timestep_schedule, dit.class_dropout, dit.solver, dit.sample_steps, dit.cfg_scale)
    assert sampling == ("logit-normal", 0.1, "heun", 16, 1.6)
    classifier = ClassifierTrainConfig()
    recipe = (classifier.arch, classifier.epochs, classifier.lr, classifier.warmup_steps, classifier.label_smoothing)
    assert recipe == ("airbench", 15, 0.05, 50, 0.2)
    assert (classifier.translate, classifier.tta, classifier.val_fraction) == (1, True, 0.1)
