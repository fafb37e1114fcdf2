"""The entrypoint's words: target flags here, the rest read by tandem's own parser."""

from __future__ import annotations

import pytest

from modal_app.flags import parse
from support import REPO
from tandem.cli import build_parser as tandem_parser
from tandem.env.settings import load_project
from tandem.errors import UsageError
from tandem.train.config import CONFIGS
from tandem.train.flags import config_from_args

SETTINGS = load_project(REPO).settings


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_the_same_words_make_the_same_config(kind, dit_flags, classifier_flags):
    flags = {"dit": dit_flags, "classifier": classifier_flags}[kind] + ["--seed", "7", "--run-name", "x", "--lr", "0.5"]
    request = parse([kind, *flags[:4], "--gpu", "T4", "--gpus", "2", *flags[4:], "--local", "--outputs", "o"], SETTINGS)
    theirs = config_from_args(CONFIGS[kind], tandem_parser().parse_args(["train", kind, *flags]))
    assert request.config() == theirs
    assert (request.target.gpu, request.target.gpus, request.target.local, request.target.outputs) == (
        "T4",
        2,
        True,
        "o",
    )


def test_defaults_come_from_the_settings_and_the_timeouts():
    dit, check = parse(["dit"], SETTINGS), parse(["check"], SETTINGS)
    assert (dit.target.gpu, dit.target.gpus, dit.target.timeout, dit.target.detach) == ("H100", 1, 14400, False)
    assert (check.target.gpu, check.target.gpus, check.target.timeout) == ("H100", 1, 1800)


def test_no_command_is_the_dit():
    assert parse([], SETTINGS).command == "dit"
    assert parse(["--steps", "5"], SETTINGS).config().steps == 5


def test_sample_keeps_its_out_flag_apart_from_outputs():
    request = parse(["sample", "--run", "r", "--out", "x.png", "--outputs", "o"], SETTINGS)
    assert (request.tandem.out, request.target.outputs, request.tandem.run) == ("x.png", "o", "r")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["train"], "argument COMMAND: invalid choice: 'train'"),
        (["dit", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
        (["check", "--steps", "3"], "unrecognized arguments: --steps 3"),
        (["sample", "--run", "r", "--gpus", "2"], "unrecognized arguments: --gpus 2"),
        (["sample", "--cfg-scale", "3"], "one of the arguments --checkpoint --run is required"),
        (["dit", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["dit", "--gpus", "two"], "argument --gpus: invalid int value: 'two'"),
        (["fetch"], "the following arguments are required: run"),
    ],
)
def test_bad_words_are_one_line(words, message):
    with pytest.raises(UsageError, match=message):
        parse(words, SETTINGS)


def test_help_shows_the_target_flags_and_tandems(capsys):
    with pytest.raises(SystemExit) as done:
        parse(["dit", "--help"], SETTINGS)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--gpus GPUS" in out and "--detach" in out and "usage: tandem train dit" in out and "--ema-decay" in out
