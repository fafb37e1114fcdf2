import argparse
import dataclasses

import pytest

from tandem.train.config import CONFIGS, ClassifierTrainConfig, DiTTrainConfig
from tandem.train.flags import add_config_arguments, config_from_args, config_to_argv


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


def test_an_optional_bool_round_trips_through_flags():
    assert "--compile" not in " ".join(config_to_argv(DiTTrainConfig()))  # None: the device decides
    for value in (True, False):
        argv = config_to_argv(DiTTrainConfig(compile=value))
        assert parser_for(DiTTrainConfig).parse_args(argv).compile is value
