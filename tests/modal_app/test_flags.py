"""The entrypoint speaks `tandem train` / `tandem sample`: the same flags, turned into the same config."""

from __future__ import annotations

import pytest
from modal_flags import TARGET_FLAGS, build_parser, option_strings, subparser, tandem_train_flags

from tandem.cli import build_parser as tandem_parser
from tandem.train.config import CONFIGS, config_from_args


@pytest.fixture(scope="module")
def parser(target):
    return build_parser(target.settings.modal_gpu, target.TRAIN_TIMEOUT, target.SHORT_TIMEOUT)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_train_flags_are_the_local_clis_plus_the_target_ones(parser, kind):
    ours = option_strings(subparser(parser, kind))
    assert ours - set(TARGET_FLAGS) == tandem_train_flags(kind)
    assert set(TARGET_FLAGS) <= ours


def test_sample_flags_are_the_local_clis_plus_the_target_ones(parser):
    ours = option_strings(subparser(parser, "sample"))
    assert ours - set(TARGET_FLAGS) == option_strings(subparser(tandem_parser(), "sample"))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_the_same_words_make_the_same_config(parser, kind, dit_flags, classifier_flags):
    flags = {"dit": dit_flags, "classifier": classifier_flags}[kind] + ["--seed", "7", "--run-name", "x"]
    ours = config_from_args(CONFIGS[kind], parser.parse_args([kind, *flags, "--gpu", "T4", "--local"]))
    theirs = config_from_args(CONFIGS[kind], tandem_parser().parse_args(["train", kind, *flags]))
    assert ours == theirs


def test_target_flag_defaults_come_from_the_settings(parser, target):
    args = parser.parse_args(["dit"])
    assert (args.gpu, args.gpus, args.timeout, args.local) == (
        target.settings.modal_gpu,
        1,
        target.TRAIN_TIMEOUT,
        False,
    )
    assert parser.parse_args(["check"]).timeout == target.SHORT_TIMEOUT


def test_on_modal_the_run_uses_the_volumes_and_a_fixed_name(target, dirs):
    from modal_launch import training_config

    parser = build_parser(target.settings.modal_gpu, target.TRAIN_TIMEOUT, target.SHORT_TIMEOUT)  # reads dirs

    config = training_config(target, parser.parse_args(["dit", "--steps", "5"]), "modal")
    assert (config.data_dir, config.runs_dir) == (target.settings.data_dir, target.settings.runs_dir)
    assert config.run_name.startswith("dit-")  # chosen here, so a retried call finds the same run
    local = training_config(target, parser.parse_args(["dit", "--run-name", "mine"]), "local")
    assert (local.data_dir, local.runs_dir, local.run_name) == (str(dirs["data"]), str(dirs["runs"]), "mine")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["dit", "--gpus", "9"], "--gpus must be between 1 and 8"),
        (["classifier", "--timeout", "0"], "--timeout must be between"),
        (["dit", "--steps", "0"], "--steps must be positive"),
    ],
)
def test_bad_flags_fail_in_one_line_before_anything_runs(target, dirs, capsys, words, message):
    from modal_launch import launch

    assert launch(target, [*words, "--local"], app_running=False) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not dirs["runs"].exists()
