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
    judged = training_config(
        target, parser.parse_args(["dit", "--classifier-checkpoint", "c/checkpoints/s.pt"]), "modal"
    )
    assert judged.classifier_checkpoint == f"{target.settings.runs_dir}/c/checkpoints/s.pt"
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


def test_on_modal_sample_names_runs_and_checkpoints_in_the_runs_volume(target, dirs, monkeypatch):
    import modal_launch
    from modal_outputs import DirFiles

    calls = []
    monkeypatch.setattr(modal_launch, "on_target", lambda f, where, *a: lambda o: calls.append(o) or {"status": "ok"})
    monkeypatch.setattr(modal_launch, "source", lambda *a: DirFiles(dirs["runs"]))
    runs = target.settings.runs_dir
    assert (
        modal_launch.sample(target, build_parser("H100", 1, 1).parse_args(["sample", "--run", "runs/d-1"]), "modal")
        == 0
    )
    args = build_parser("H100", 1, 1).parse_args(["sample", "--checkpoint", "d-1/checkpoints/step_1.pt"])
    assert modal_launch.sample(target, args, "modal") == 0
    assert (calls[0]["run"], calls[1]["checkpoint"]) == (f"{runs}/d-1", f"{runs}/d-1/checkpoints/step_1.pt")
    with pytest.raises(modal_launch.UsageError, match="--out writes on this machine only"):
        modal_launch.sample(
            target, build_parser("H100", 1, 1).parse_args(["sample", "--run", "d", "--out", "x.png"]), "modal"
        )
