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


@pytest.mark.parametrize(
    ("cls", "argv", "length"),
    [
        (DiTTrainConfig, [], (600, 0)),  # the DiT's default length is in steps
        (DiTTrainConfig, ["--epochs", "3"], (0, 3)),  # a length given alone is that length alone
        (DiTTrainConfig, ["--steps", "50", "--epochs", "3"], (50, 3)),  # both: whichever ends first
        (ClassifierTrainConfig, [], (0, 15)),  # the classifier's, in epochs
        (ClassifierTrainConfig, ["--steps", "200"], (200, 0)),
    ],
)
def test_both_trainers_take_a_length_in_steps_and_or_epochs(cls, argv, length):
    c = config_from_args(cls, parser_for(cls).parse_args(argv))
    assert (c.steps, c.epochs) == length


def test_steps_and_epochs_mean_one_thing_on_both_trainers():
    from tandem.train.config import total_steps

    assert total_steps(DiTTrainConfig(steps=0, epochs=3), steps_per_epoch=22) == 66
    assert total_steps(ClassifierTrainConfig(steps=50, epochs=3), steps_per_epoch=22) == 50
    assert total_steps(ClassifierTrainConfig(steps=100, epochs=3), steps_per_epoch=22) == 66
    help_of = {cls: {f.name: f.metadata["help"] for f in dataclasses.fields(cls)} for cls in CONFIGS.values()}
    shared = help_of[DiTTrainConfig].keys() & help_of[ClassifierTrainConfig].keys()
    assert {"steps", "epochs", "image_size", "batch_size"} <= shared
    assert all(help_of[DiTTrainConfig][n] == help_of[ClassifierTrainConfig][n] for n in shared - {"batch_size"})
    assert "width" not in help_of[DiTTrainConfig]  # the DiT's is --hidden-size: --width is the classifier's
