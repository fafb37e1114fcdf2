import argparse
import dataclasses

import pytest

from tandem.data import DATASETS
from tandem.errors import UsageError
from tandem.models import ARCHS, DIT_SIZES
from tandem.train import config as cfg
from tandem.train.config import (
    CONFIGS,
    ClassifierTrainConfig,
    DiTTrainConfig,
    add_config_arguments,
    config_from_args,
    config_from_dict,
    config_to_argv,
    resolve_for_device,
)


def parser_for(cls) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_config_arguments(parser, cls)
    return parser


@pytest.mark.parametrize("cls", list(CONFIGS.values()))
def test_every_field_has_help_and_one_generated_flag(cls, capsys):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{f.name} has no help text"
    with pytest.raises(SystemExit):
        parser_for(cls).parse_args(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text
        if f.type in (bool, "bool"):
            assert "--no-" + f.name.replace("_", "-") in text


def test_defaults_round_trip_through_flags():
    for cls in CONFIGS.values():
        assert config_from_args(cls, parser_for(cls).parse_args([])) == cls()


def test_config_to_argv_round_trips_every_field():
    changed = DiTTrainConfig(
        steps=7, lr=3.5e-4, resume=True, amp=False, size="S", run_name="x y", cfg_scale=1.25, deterministic=True
    )
    argv = config_to_argv(changed)
    assert config_from_args(DiTTrainConfig, parser_for(DiTTrainConfig).parse_args(argv)) == changed
    classifier = ClassifierTrainConfig(epochs=3, whiten=False, tta=False, width=32, momentum=0.85)
    argv = config_to_argv(classifier)
    assert config_from_args(ClassifierTrainConfig, parser_for(ClassifierTrainConfig).parse_args(argv)) == classifier


def test_flag_names_and_bools():
    args = parser_for(DiTTrainConfig).parse_args(["--batch-size", "7", "--no-amp", "--compile", "--patch-size", "4"])
    c = config_from_args(DiTTrainConfig, args)
    assert (c.batch_size, c.amp, c.compile, c.patch_size) == (7, False, True, 4)


def test_config_from_dict_ignores_unknown_keys():
    c = config_from_dict(DiTTrainConfig, {**dataclasses.asdict(DiTTrainConfig(steps=3)), "gone": 1})
    assert c.steps == 3


def test_data_and_runs_dirs_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TANDEM_DATA_DIR", "/data")
    monkeypatch.setenv("TANDEM_RUNS_DIR", "/runs")
    assert (DiTTrainConfig().data_dir, DiTTrainConfig().runs_dir) == ("/data", "/runs")
    args = parser_for(DiTTrainConfig).parse_args([])
    assert (args.data_dir, args.runs_dir) == ("/data", "/runs")
    monkeypatch.delenv("TANDEM_DATA_DIR")
    monkeypatch.delenv("TANDEM_RUNS_DIR")
    assert (DiTTrainConfig().data_dir, DiTTrainConfig().runs_dir) == ("./data", "./runs")


def test_help_names_every_choice_the_code_accepts():
    """The choices listed in help texts must match the registries they are checked against."""
    dataset_help = cfg.TrainConfig.__dataclass_fields__["dataset"].metadata["help"]
    assert all(name in dataset_help for name in DATASETS)
    arch_help = ClassifierTrainConfig.__dataclass_fields__["arch"].metadata["help"]
    assert all(name in arch_help for name in ARCHS)
    size_help = DiTTrainConfig.__dataclass_fields__["size"].metadata["help"]
    assert all(name in size_help for name in DIT_SIZES)
    assert cfg.SOLVERS == ("euler", "heun")
    assert cfg.TIMESTEP_SCHEDULES == ("logit-normal", "uniform")


@pytest.mark.parametrize(
    "changes, flag",
    [
        (dict(dataset="nope"), "--dataset"),
        (dict(steps=0), "--steps"),
        (dict(steps=-3), "--steps"),
        (dict(batch_size=-1), "--batch-size"),
        (dict(log_every=-1), "--log-every"),
        (dict(lr=0.0), "--lr"),
        (dict(image_size=10, patch_size=4), "--patch-size"),
        (dict(size="XXL"), "--size"),
        (dict(keep_checkpoints=0), "--keep-checkpoints"),
        (dict(device="tpu"), "--device"),
        (dict(classifier_checkpoint="/no/such.pt"), "--classifier-checkpoint"),
        (dict(dataset="imagefolder"), "--folder"),
    ],
)
def test_validate_names_the_flag(changes, flag):
    with pytest.raises(UsageError, match=flag):
        cfg.validate(DiTTrainConfig(**changes))


@pytest.mark.parametrize(
    "changes, flag",
    [(dict(arch="vgg"), "--arch"), (dict(epochs=0), "--epochs"), (dict(arch="resnet18", width=8), "--width")],
)
def test_validate_classifier(changes, flag):
    with pytest.raises(UsageError, match=flag):
        cfg.validate(ClassifierTrainConfig(**changes))


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
    text = parser_for(DiTTrainConfig).format_help()
    assert "0: the device's default, 64 on CPU and 256 on CUDA" in " ".join(text.split())
    assert "default: on CUDA, off on other devices" in " ".join(text.split())
    assert "10 on CPU, 50 on CUDA" in " ".join(text.split())


def test_an_optional_bool_round_trips_through_flags():
    assert "--compile" not in " ".join(config_to_argv(DiTTrainConfig()))  # None: the device decides
    for value in (True, False):
        argv = config_to_argv(DiTTrainConfig(compile=value))
        assert parser_for(DiTTrainConfig).parse_args(argv).compile is value
