"""A run is its config.json: continuing it trains that config, with only the changes a continued run
may take, recorded with the step they took effect; a run with nothing trained starts over."""

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import train_in_background
from tandem.cli import main
from tandem.errors import UsageError
from tandem.train import checkpoint, run_training
from tandem.train.attempt import RESUME, START, START_OVER, plan_attempt
from tandem.train.config import DiTTrainConfig

LR = DiTTrainConfig().lr  # what the runs below record: the default

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`


def record(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def steps_logged(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r]


@pytest.fixture
def stopped_run(fast_flags, runs_dir):
    """A DiT run of 6 steps, checkpoint every 2, stopped at step 2 (--stop-after): its config is the record."""
    argv = ["train", "dit", *fast_flags(run_name="r", steps=6, checkpoint_every=2, stop_after=2, seed=5)]
    assert main(argv) == 0
    return runs_dir / "r"


def resume(run: Path, *extra: str) -> int:
    return main(["train", "dit", "--resume", "--run-name", run.name, "--runs-dir", str(run.parent), *extra])


def test_resume_with_no_flags_trains_the_recorded_config(stopped_run, capsys):
    before = record(stopped_run)["config"]
    assert resume(stopped_run) == 0
    after = record(stopped_run)
    assert {k: v for k, v in after["config"].items() if k not in ("resume", "stop_after", "data_dir")} == {
        k: v for k, v in before.items() if k not in ("resume", "stop_after", "data_dir")
    }
    assert after["config"]["steps"] == 6 and after["config"]["seed"] == 5 and after["changes"] == []
    names = [p.name for _, p in checkpoint.CheckpointDir(stopped_run / "checkpoints").existing()]
    assert names == ["step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]  # every 2 steps, as recorded
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6]


def test_a_conflicting_flag_is_refused_naming_the_recorded_value(stopped_run, capsys):
    before = (stopped_run / "config.json").read_bytes()
    capsys.readouterr()
    assert resume(stopped_run, "--lr", "0.5") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        f"tandem train: error: --resume: --lr 0.5 differs from the run's recorded --lr {LR}; a continued run "
        "keeps it: drop --lr, or start a new run with another --run-name"
    ]
    assert resume(stopped_run, "--no-deterministic") == 2
    assert "--no-deterministic differs from the run's recorded --deterministic" in capsys.readouterr().err
    assert (stopped_run / "config.json").read_bytes() == before


def test_a_changeable_flag_is_recorded_with_the_step_it_took_effect(stopped_run, capsys):
    assert resume(stopped_run, "--steps", "8", "--checkpoint-every", "3") == 0
    out = capsys.readouterr().out
    assert "changed from step 2: --steps 6 -> 8; --checkpoint-every 2 -> 3" in out
    after = record(stopped_run)
    assert after["config"]["steps"] == 8 and after["config"]["checkpoint_every"] == 3
    assert after["changes"] == [
        {"step": 2, "setting": "steps", "from": 6, "to": 8},
        {"step": 2, "setting": "checkpoint_every", "from": 2, "to": 3},
    ]
    assert checkpoint.CheckpointDir(stopped_run / "checkpoints").existing()[-1][0] == 8
    # A later resume keeps the history and adds to it.
    assert resume(stopped_run, "--steps", "9") == 0
    assert [c["step"] for c in record(stopped_run)["changes"]] == [2, 2, 8]


def test_a_complete_run_is_refused_unless_extended(stopped_run, capsys):
    assert resume(stopped_run) == 0
    capsys.readouterr()
    assert resume(stopped_run) == 2
    assert "is complete (step 6, --steps 6); pass a larger --steps" in capsys.readouterr().err
    assert resume(stopped_run, "--steps", "4") == 2
    assert "--steps 4 ends before step 6" in capsys.readouterr().err
    assert resume(stopped_run, "--steps", "7") == 0
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6, 7]


def test_a_run_killed_after_its_last_checkpoint_finishes_on_resume(stopped_run, capsys):
    assert resume(stopped_run) == 0
    metrics = stopped_run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("".join(line + "\n" for line in lines if not json.loads(line).get("final")))
    capsys.readouterr()
    # Its last checkpoint is step 6 of 6, but no final record: resuming trains nothing and writes the finals.
    assert resume(stopped_run) == 0
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6]
    finals = [r for r in map(json.loads, metrics.read_text().splitlines()) if r.get("final")]
    assert [(r["step"], r["status"]) for r in finals] == [(6, "completed")]
    assert resume(stopped_run) == 2  # and now it is complete


def test_a_complete_classifier_run_is_refused_unless_extended(classifier_config, runs_dir, capsys):
    run_training("classifier", classifier_config(run_name="c", epochs=1))
    argv = ["train", "classifier", "--resume", "--run-name", "c", "--runs-dir", str(runs_dir)]
    assert main(argv) == 2
    assert "is complete" in capsys.readouterr().err
    assert main([*argv, "--epochs", "2"]) == 0
    assert record(runs_dir / "c")["changes"] == [{"step": 5, "setting": "epochs", "from": 1, "to": 2}]


def test_a_run_without_a_complete_checkpoint_starts_over(fast_flags, runs_dir, capsys):
    run = runs_dir / "early"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_0000002.pt").write_bytes(b"torn")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    flags = fast_flags(run_name="early", steps=3)
    assert main(["train", "dit", *flags]) == 2
    assert "already exists; pass --resume to continue it (one with no complete checkpoint starts over)" in (
        capsys.readouterr().err
    )
    assert main(["train", "dit", *flags, "--resume"]) == 0
    assert "has no complete checkpoint, so nothing trained to keep: starting it over from step 0" in (
        capsys.readouterr().out
    )
    assert steps_logged(run) == [1, 2, 3]
    assert (run / "checkpoints" / "step_0000002.pt.unusable").read_bytes() == b"torn"  # set aside, not lost


def test_plan_attempt_decides_for_every_target(dit_config, runs_dir):
    config = dit_config(run_name="p", steps=2)
    assert plan_attempt("dit", config).action == START
    with pytest.raises(UsageError, match="there is no run"):
        plan_attempt("dit", dit_config(run_name="p", resume=True))
    assert plan_attempt("dit", dataclasses.replace(config, resume=False)).action == START

    (runs_dir / "p").mkdir()
    (runs_dir / "p" / "metrics.jsonl").write_text("")
    with pytest.raises(UsageError, match="already exists"):
        plan_attempt("dit", config)
    assert plan_attempt("dit", dataclasses.replace(config, resume=True)).action == START_OVER

    run_training("dit", dit_config(run_name="q", steps=2, stop_after=1))
    attempt = plan_attempt("dit", dit_config(run_name="q", steps=4, lr=1.0, resume=True), {"steps"})
    assert attempt.action == RESUME and attempt.step == 1 and attempt.checkpoint.name == "step_0000001.pt"
    assert attempt.config.steps == 4 and attempt.config.lr == dit_config().lr  # lr was not given: recorded
    assert attempt.changes == {"steps": (2, 4)}
    with pytest.raises(UsageError, match="recorded --lr"):
        plan_attempt("dit", dit_config(run_name="q", lr=1.0, resume=True))  # None: every field given


def test_the_printed_resume_command_continues_the_run(dit_config, runs_dir):
    """The repro: SIGTERM a 40-step run that checkpoints every 5, then paste the line it printed."""
    config = dit_config(run_name="a", steps=40, checkpoint_every=5, keep_checkpoints=3, log_every=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = train_in_background("dit", config, until_lines=2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    (hint,) = [line for line in out.splitlines() if line.startswith("continue with: ")]
    words = shlex.split(hint.removeprefix("continue with: "))
    assert words == ["tandem", "train", "dit", "--resume", "--run-name", "a", "--runs-dir", str(runs_dir)]

    resumed = subprocess.run([sys.executable, "-m", *words], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    names = [p.name for _, p in checkpoint.CheckpointDir(runs_dir / "a" / "checkpoints").existing()]
    assert names == ["step_0000030.pt", "step_0000035.pt", "step_0000040.pt"]
    assert record(runs_dir / "a")["config"]["steps"] == 40 and record(runs_dir / "a")["changes"] == []
    assert steps_logged(runs_dir / "a") == list(range(1, 41))


def edit_record(run: Path, **settings) -> bytes:
    """Hand-edit the run's config.json (its settings); returns the bytes written."""
    values = record(run)
    values["config"].update(settings)
    (run / "config.json").write_text(json.dumps(values))
    return (run / "config.json").read_bytes()


def test_a_config_json_edited_by_hand_is_refused_naming_each_field(stopped_run, capsys):
    edited = edit_record(stopped_run, batch_size=16, lr=0.5)
    capsys.readouterr()
    assert resume(stopped_run) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"tandem train: error: --resume: {stopped_run}/config.json records batch_size = 16, lr = 0.5, but "
        f"checkpoint step_0000002.pt trained with --batch-size 32 --lr {LR} and no recorded change explains it; "
        "put the checkpoint's values back in config.json (or delete it: --resume restores it from the checkpoint), "
        "or start a new run with another --run-name"
    ]
    assert (stopped_run / "config.json").read_bytes() == edited  # nothing rewritten
    assert steps_logged(stopped_run) == [1, 2]


def test_a_value_of_the_wrong_type_in_config_json_asks_for_the_file_to_be_fixed(stopped_run, capsys):
    edit_record(stopped_run, lr="fast")
    capsys.readouterr()
    for flags in ([], ["--lr", str(LR)]):  # the flag cannot fix the file, and the message never says it can
        assert resume(stopped_run, *flags) == 2
        err = capsys.readouterr().err
        assert f"config.json records lr = 'fast', but checkpoint step_0000002.pt trained with --lr {LR}" in err
        assert "pass --lr" not in err
    edit_record(stopped_run, lr=LR)  # fixed as told: the run continues
    assert resume(stopped_run) == 0
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6]


def test_a_changeable_setting_edited_by_hand_is_changed_by_its_flag(stopped_run, capsys):
    edit_record(stopped_run, steps=8)
    capsys.readouterr()
    assert resume(stopped_run) == 2
    assert "; a continued run changes them by their flags: --resume --steps 8" in capsys.readouterr().err
    assert resume(stopped_run, "--steps", "8") == 0
    assert record(stopped_run)["changes"] == [{"step": 2, "setting": "steps", "from": 6, "to": 8}]
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_change_recorded_after_the_checkpoint_stays_in_force(stopped_run):
    # A resume changed --steps at step 2 and stopped; its checkpoint of step 4 was then lost.
    assert resume(stopped_run, "--steps", "8", "--stop-after", "2") == 0
    (stopped_run / "checkpoints" / "step_0000004.pt").unlink()
    assert resume(stopped_run) == 0  # config.json (steps 8) differs from step 2's checkpoint (6): explained
    assert record(stopped_run)["config"]["steps"] == 8
    assert record(stopped_run)["changes"] == [{"step": 2, "setting": "steps", "from": 6, "to": 8}]
    assert checkpoint.CheckpointDir(stopped_run / "checkpoints").existing()[-1][0] == 8


@pytest.mark.parametrize(
    "damage, problem", [("delete", "is missing"), ("[1, 2]", "is unreadable or not a run's record")]
)
def test_a_lost_config_json_is_restored_from_the_checkpoint(stopped_run, capsys, damage, problem):
    assert resume(stopped_run, "--steps", "8", "--stop-after", "1") == 0  # a change to keep
    before = record(stopped_run)
    if damage == "delete":
        (stopped_run / "config.json").unlink()
    else:
        (stopped_run / "config.json").write_text(damage)
    capsys.readouterr()
    assert resume(stopped_run, "--stop-after", "1") == 0
    assert (
        f"{stopped_run}/config.json {problem}: restored from step_0000003.pt; resuming {stopped_run} from "
        "step_0000003.pt" in capsys.readouterr().out
    )
    after = record(stopped_run)
    assert after["config"] == before["config"] and after["started"] == before["started"]
    assert after["changes"] == [{"step": 2, "setting": "steps", "from": 6, "to": 8}]
    assert steps_logged(stopped_run) == [1, 2, 3, 4]


def test_a_run_whose_checkpoints_are_all_unusable_keeps_its_history(stopped_run, capsys):
    history = (stopped_run / "metrics.jsonl").read_bytes()
    (stopped_run / "samples").mkdir()
    (stopped_run / "samples" / "step_0000002.png").write_bytes(b"a grid of the earlier attempt")
    for _, path in checkpoint.CheckpointDir(stopped_run / "checkpoints").existing():
        path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    assert resume(stopped_run) == 0
    out = capsys.readouterr().out
    assert "has no complete checkpoint, so nothing trained to keep: starting it over from step 0" in out
    assert "the earlier attempt's metrics and grids are kept as metrics.jsonl.unusable, samples.unusable" in out
    assert (stopped_run / "metrics.jsonl.unusable").read_bytes() == history
    assert (stopped_run / "samples.unusable" / "step_0000002.png").read_bytes() == b"a grid of the earlier attempt"
    assert (stopped_run / "checkpoints" / "step_0000002.pt.unusable").exists()
    assert steps_logged(stopped_run) == [1, 2, 3, 4, 5, 6]
