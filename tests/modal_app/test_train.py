"""Every README Modal command, run as `modal run` runs it: Modal's CLI imports modal_app/train.py, builds the
click command of its local entrypoint and calls it; what reaches `.remote` / `.spawn` is compared with
literal expectations and with the config `tandem train <kind>` builds from the same flags."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from support import REPO
from tandem.cli import build_parser as tandem_parser
from tandem.train.config import CONFIGS
from tandem.train.flags import config_from_args

H100 = {"gpu": "H100", "timeout": 4 * 3600, "cpu": 4.0, "memory": 16384}  # the settings' defaults, training
SHORT = {**H100, "timeout": 30 * 60}


def tandem_config(kind: str, flags: list[str], run_name: str) -> dict:
    """What `tandem train <kind> FLAGS` would train, on Modal's Volumes under the run name chosen."""
    config = config_from_args(CONFIGS[kind], tandem_parser().parse_args(["train", kind, *flags])).__dict__
    return {**config, "data_dir": "/data", "runs_dir": "/runs", "run_name": run_name}


def sent_options(sent) -> dict:
    return {"gpu": sent.gpu, "timeout": sent.timeout, "cpu": sent.cpu, "memory": sent.memory}


# (README command, [(how, Function, options)], training kind and flags or None)
README_COMMANDS = {
    "modal run modal_app/train.py dit --steps 2000": ([("remote", "train_dit", H100)], ("dit", ["--steps", "2000"])),
    "modal run modal_app/train.py classifier --dataset cifar10 --gpu A100 --gpus 2": (
        [("remote", "train_classifier", {**H100, "gpu": "A100:2"})],
        ("classifier", ["--dataset", "cifar10"]),
    ),
    "modal run modal_app/train.py sample --run dit-20260101-120000 --cfg-scale 3": (
        [("remote", "sample", SHORT)],
        None,
    ),
    "modal run modal_app/train.py check": ([("remote", "check", SHORT)], None),
    "modal run modal_app/train.py runs": ([], None),  # the Volume read through its API: nothing started
    "modal run --detach modal_app/train.py dit --steps 200000": (
        [("spawn", "train_dit", H100)],
        ("dit", ["--steps", "200000"]),
    ),
    "modal run modal_app/train.py fetch dit-20260101-120000": ([], None),
    "modal run modal_app/train.py dit --gpu H100 --gpus 8 --nodes 2": (
        [("remote", "train_2_nodes", {**H100, "gpu": "H100:8"})],
        ("dit", []),
    ),
}


def readme_modal_commands() -> set[str]:
    text = (REPO / "README.md").read_text()
    lines = re.findall(r"^\s{4}(modal run [^#\n]*modal_app/train\.py[^#\n]*)", text, flags=re.M)
    return {re.sub(r"\s+", " ", line).strip() for line in lines}


def test_every_readme_modal_command_has_a_case_below():
    assert readme_modal_commands() == set(README_COMMANDS)


@pytest.mark.parametrize("command", sorted(README_COMMANDS))
def test_readme_command_reaches_modal_with_these_options(command, modal_cli, dirs):
    expected, training = README_COMMANDS[command]
    run = dirs["outputs"].parent / "volume" / "dit-20260101-120000"
    (run / "samples").mkdir(parents=True)  # a finished run in the runs Volume, for sample and fetch
    (run / "config.json").write_text("{}")
    (run / "samples" / "step_0000600.png").write_bytes(b"png")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "step_0000600.pt").write_bytes(b"pt")

    code, output = modal_cli.invoke(command.split()[2:])
    assert code == 0, output
    assert [(s.how, s.function, sent_options(s)) for s in modal_cli.sent] == expected
    if training:
        kind, flags = training
        (sent,) = modal_cli.sent
        *lead, config, placement, given = sent.args
        nodes = 2 if "--nodes 2" in command else 1
        assert (lead, sent.cluster) == ((["dit"], (2, True)) if nodes > 1 else ([], None))
        # the flags typed, and --epochs 0 beside a --steps given alone (the length is that many steps)
        typed = {"dit": {"steps": "flag", "epochs": "flag"} if flags else {}, "classifier": {"dataset": "flag"}}
        assert given == typed[kind]
        assert re.fullmatch(rf"{kind}-\d{{8}}-\d{{6}}", config["run_name"])  # fixed before the call
        assert config == tandem_config(kind, flags, config["run_name"])
        assert placement == {"gpu": sent.gpu.split(":")[0], "count": int((sent.gpu + ":1").split(":")[1]), **{
            k: sent_options(sent)[k] for k in ("timeout", "cpu", "memory")
        }, "nodes": nodes, "rdma": True}  # fmt: skip
    if command.endswith("sample --run dit-20260101-120000 --cfg-scale 3"):
        (sent,) = modal_cli.sent
        theirs = vars(tandem_parser().parse_args(["sample", "--run", "x", "--cfg-scale", "3"]))
        assert sent.args == (
            {**{k: v for k, v in theirs.items() if k not in ("command", "func")}, "run": "/runs/dit-20260101-120000"},
        )
    if command.endswith(" check"):
        assert modal_cli.sent[0].args == ("modal-H100", "/runs")
        assert json.loads((dirs["outputs"] / "fingerprints" / "modal-H100.json").read_text())["label"] == "modal-H100"
    if " fetch " in command or " sample " in command:
        copied = sorted(p.relative_to(dirs["outputs"]).as_posix() for p in dirs["outputs"].rglob("*") if p.is_file())
        assert copied == ["dit-20260101-120000/config.json", "dit-20260101-120000/samples/step_0000600.png"]


def test_a_detached_run_says_how_to_follow_and_fetch_it(modal_cli, dirs):
    code, output = modal_cli.invoke(["--detach", "modal_app/train.py", "dit", "--run-name", "long"])
    assert code == 0, output
    assert "started dit run long as call fc-test (app ap-test)" in output
    assert "follow:  modal app logs ap-test --follow" in output
    assert "fetch:   modal run modal_app/train.py fetch long" in output
    assert not dirs["outputs"].exists()  # nothing to copy yet


def test_a_finished_run_lands_in_outputs(modal_cli, dirs):
    code, output = modal_cli.invoke(["modal_app/train.py", "dit", "--run-name", "r1"])
    assert code == 0, output
    assert sorted(p.name for p in (dirs["outputs"] / "r1").rglob("*") if p.is_file()) == [
        "config.json",
        "metrics.jsonl",
        "step_0000001.png",
    ]
    assert "dit completed at step 1" in output


def test_no_command_trains_the_dit(modal_cli, dirs):
    code, output = modal_cli.invoke(["modal_app/train.py", "--steps", "5"])
    assert code == 0, output
    (sent,) = modal_cli.sent
    assert sent.function == "train_dit" and sent.args[0]["steps"] == 5


def test_a_run_longer_than_a_call_is_followed_into_the_next(modal_cli, dirs, monkeypatch):
    import modal

    final = {"kind": "dit", "run_dir": "/runs/long", "status": "completed", "step": 9}
    modal_cli.results = [{"kind": "dit", "run_dir": "/runs/long", "status": "continued", "step": 4, "call_id": "fc-2"}]
    asked = []
    monkeypatch.setattr(modal.FunctionCall, "get", lambda self, timeout=None: asked.append(self) or final)
    code, output = modal_cli.invoke(["modal_app/train.py", "dit", "--run-name", "long"])
    assert code == 0, output
    assert "continuing in call fc-2" in output and "dit completed at step 9" in output
    assert len(asked) == 1


BAD_INPUT = [
    (["modal_app/train.py", "train"], "invalid choice: 'train'"),
    (["modal_app/train.py", "dit", "--gpu", "nonsense"], "--gpu 'nonsense' is not a Modal GPU type; use one of T4, L4"),
    (["modal_app/train.py", "dit", "--gpu", "A10G:8"], "--gpu 'A10G:8': give the type alone and the count with --gpus"),
    (["modal_app/train.py", "dit", "--gpu", "A10G", "--gpus", "8"], "--gpus 8: a container holds 1 to 4 A10G GPUs"),
    (["modal_app/train.py", "classifier", "--gpus", "0"], "--gpus 0: a container holds 1 to 8 H100 GPUs"),
    (["modal_app/train.py", "dit", "--timeout", "90000"], "--timeout 90000: Modal allows 1 to 86400 seconds per call"),
    (["modal_app/train.py", "check", "--timeout", "0"], "--timeout 0: Modal allows 1 to 86400 seconds per call"),
    (["modal_app/train.py", "dit", "--detach"], "under `modal run`, detach with Modal's own flag: modal run --detach"),
    (["modal_app/train.py", "dit", "--steps", "0"], "--steps 0 and --epochs 0: a run needs a length"),
    (["modal_app/train.py", "dit", "--bogus"], "unrecognized arguments: --bogus"),
    (
        ["modal_app/train.py", "dit", "--gpus", "8", "--nodes", "3"],
        "--nodes 3: this app defines clusters of 2, 4, 8, 16, 32 nodes",
    ),
    (["modal_app/train.py", "dit", "--gpus", "8", "--nodes", "33"], "--nodes 33: a Modal cluster has 2 to 32 nodes"),
    (
        ["modal_app/train.py", "dit", "--gpu", "A100", "--gpus", "8", "--nodes", "2"],
        "--gpu A100: Modal clusters run on H100, H100!, H200, B200, B200+",
    ),
    (
        ["modal_app/train.py", "dit", "--gpus", "4", "--nodes", "2"],
        "--gpus 4: each node of a Modal cluster takes all 8 GPUs of its host; pass --gpus 8",
    ),
    (
        ["modal_app/train.py", "dit", "--gpus", "8", "--nodes", "2", "--node-rank", "1"],
        "--node-rank and --master-addr are Modal's to choose",
    ),
    (
        ["modal_app/train.py", "dit", "--gpus", "8", "--nodes", "2", "--local"],
        "--nodes starts a Modal cluster; on this machine use `tandem train",
    ),
    (
        ["modal_app/train.py", "fetch", "nothing-here"],
        "fetch nothing-here: no such run in Volume tandem-runs, which holds no runs yet",
    ),
    (
        ["modal_app/train.py", "dit", "--classifier-checkpoint", "nosuch/ckpt.pt"],
        "--classifier-checkpoint nosuch/ckpt.pt: no such file in Volume tandem-runs (paths are relative to it); "
        "pass a run instead (its name or latest: `modal run modal_app/train.py runs` lists them)",
    ),
    (
        ["modal_app/train.py", "dit", "--classifier-checkpoint", "/runs/nosuch/ckpt.pt"],
        "--classifier-checkpoint /runs/nosuch/ckpt.pt: no such file in Volume tandem-runs",
    ),
    (
        ["modal_app/train.py", "sample", "--run", "missing"],
        "--run missing: no such run in Volume tandem-runs, which holds no dit runs yet",
    ),
    (
        ["modal_app/train.py", "sample", "--run", "empty"],
        "--run empty: no checkpoint in Volume tandem-runs, empty/checkpoints/; pass a DiT run that has saved one",
    ),
    (
        ["modal_app/train.py", "sample", "--checkpoint", "empty/checkpoints/step_0000001.pt"],
        "--checkpoint empty/checkpoints/step_0000001.pt: no such file in Volume tandem-runs",
    ),
]


@pytest.mark.parametrize(("words", "message"), BAD_INPUT, ids=[" ".join(w[1:]) for w, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_nothing_sent_nothing_written(words, message, modal_cli, dirs, capsys):
    empty = modal_cli.volume / "empty"  # a run in the runs Volume that never saved a checkpoint
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    (empty / "checkpoints" / ".step_0000001.pt.7.tmp").write_bytes(b"half")  # a write cut short
    code, output = modal_cli.invoke(words)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], output
    assert lines[0].startswith(
        f"modal_app/train.py {words[1] if words[1] in ('dit', 'classifier', 'sample', 'check', 'fetch') else 'train'}: error: "
    )
    assert modal_cli.sent == []
    assert sorted(p.name for p in dirs["outputs"].parent.iterdir()) == ["volume"]  # no outputs, runs or data


def run_python(words, cwd, env=None):
    import os

    return subprocess.run(
        [sys.executable, str(REPO / "modal_app" / "train.py"), *words],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.training
def test_python_modal_app_train_py_works_from_anywhere(tmp_path):
    """`python modal_app/train.py`: a file inside a package, run from any folder."""
    done = run_python(["dit", "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--gpus GPUS" in done.stdout and "--checkpoint-every CHECKPOINT_EVERY" in done.stdout


@pytest.mark.training
def test_detach_without_credentials_is_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "MODAL_TOKEN_ID": "",
        "MODAL_TOKEN_SECRET": "",
        "MODAL_CONFIG_PATH": str(home / "none.toml"),
    }
    done = run_python(["dit", "--detach"], tmp_path, env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(
        "modal_app/train.py dit: error: --detach starts the run on Modal, and this machine has no Modal credentials; log in with `modal token new`"
    )
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_module_mode_reaches_modal_the_same_way(modal_cli, dirs):
    """`modal run -m modal_app.train ...`, Modal's way for a file inside a package."""
    code, output = modal_cli.invoke(["-m", "modal_app.train", "classifier", "--gpu", "T4", "--gpus", "2"])
    assert code == 0, output
    ((how, function, gpu),) = [(s.how, s.function, s.gpu) for s in modal_cli.sent]
    assert (how, function, gpu) == ("remote", "train_classifier", "T4:2")


def test_a_classifier_checkpoint_in_the_runs_volume_is_found_and_sent(modal_cli, dirs):
    (modal_cli.volume / "cls" / "checkpoints").mkdir(parents=True)
    (modal_cli.volume / "cls" / "checkpoints" / "step_0000010.pt").write_bytes(b"pt")
    for given in ("cls/checkpoints/step_0000010.pt", "/runs/cls/checkpoints/step_0000010.pt"):
        code, output = modal_cli.invoke(["modal_app/train.py", "dit", "--classifier-checkpoint", given])
        assert code == 0, output
    assert [(s.function, s.args[0]["classifier_checkpoint"]) for s in modal_cli.sent] == [
        ("train_dit", "/runs/cls/checkpoints/step_0000010.pt")
    ] * 2


def test_a_checkpoint_or_run_in_the_runs_volume_is_found_and_sampled(modal_cli, dirs):
    (modal_cli.volume / "d" / "checkpoints").mkdir(parents=True)
    (modal_cli.volume / "d" / "checkpoints" / "step_0000006.pt").write_bytes(b"pt")
    for words in (["--checkpoint", "d/checkpoints/step_0000006.pt"], ["--run", "d"]):
        code, output = modal_cli.invoke(["modal_app/train.py", "sample", *words])
        assert code == 0, output
    assert [(s.function, s.args[0]["checkpoint"], s.args[0]["run"]) for s in modal_cli.sent] == [
        ("sample", "/runs/d/checkpoints/step_0000006.pt", None),
        ("sample", None, "/runs/d"),
    ]


def test_here_a_missing_classifier_checkpoint_is_tandems_own_check(modal_cli, dirs):
    """--local: no Volume is read; the path is checked as `tandem train dit` checks it."""
    code, output = modal_cli.invoke(
        ["modal_app/train.py", "dit", "--classifier-checkpoint", "nosuch/ckpt.pt", "--local"]
    )
    assert code == 2, output
    assert output.strip().splitlines() == [
        "modal_app/train.py dit: error: --classifier-checkpoint nosuch/ckpt.pt: no such file; pass a checkpoint "
        "file, or a run (its name or latest)"
    ]
    assert modal_cli.sent == []


def volume_run(volume, name: str, kind: str, written: float) -> None:
    """A run in the runs Volume with a checkpoint and a grid, its files last written `written` seconds ago."""
    import os
    import time

    run = volume / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "samples").mkdir()
    files = {
        "config.json": json.dumps({"kind": kind, "config": {"steps": 20}}),
        "metrics.jsonl": '{"step": 20, "loss": 0.5}\n',
        "result.json": json.dumps({"status": "completed", "step": 20}),
        "checkpoints/step_0000020.pt": "pt",
        "samples/step_0000020.png": "png",
    }
    for relative, text in files.items():
        (run / relative).write_text(text)
        os.utime(run / relative, (time.time() - written,) * 2)


@pytest.fixture
def volume_runs(modal_cli):
    volume_run(modal_cli.volume, "dit-20261201-090000", "dit", 3600)
    volume_run(modal_cli.volume, "dit-20261202-090000", "dit", 600)
    volume_run(modal_cli.volume, "classifier-20261202-100000", "classifier", 60)
    return modal_cli


def test_runs_lists_the_runs_volume_newest_first(volume_runs, dirs):
    code, output = volume_runs.invoke(["modal_app/train.py", "runs"])
    assert code == 0, output
    rows = [line.split()[:4] for line in output.splitlines()[-3:]]
    assert rows == [
        ["classifier-20261202-100000", "classifier", "completed", "20"],
        ["dit-20261202-090000", "dit", "completed", "20/20"],
        ["dit-20261201-090000", "dit", "completed", "20/20"],
    ]
    code, output = volume_runs.invoke(["modal_app/train.py", "runs", "--json", "--kind", "dit"])
    assert [run["name"] for run in json.loads(output[output.index("[") :])] == [
        "dit-20261202-090000",
        "dit-20261201-090000",
    ]
    assert volume_runs.sent == []  # read through the Volume's API, nothing started


def test_run_words_name_runs_of_the_runs_volume(volume_runs, dirs):
    code, output = volume_runs.invoke(["modal_app/train.py", "fetch", "dit-20261201"])  # a unique prefix
    assert code == 0, output
    assert (dirs["outputs"] / "dit-20261201-090000" / "samples" / "step_0000020.png").read_text() == "png"

    code, output = volume_runs.invoke(["modal_app/train.py", "sample", "--run", "latest"])  # the newest DiT
    assert code == 0, output
    code, output = volume_runs.invoke(["modal_app/train.py", "dit", "--run", "latest", "--steps", "40"])
    assert code == 0, output
    code, output = volume_runs.invoke(["modal_app/train.py", "dit", "--classifier-checkpoint", "latest"])
    assert code == 0, output
    (sample, train, evaluated) = volume_runs.sent
    assert sample.args[0]["run"] == "/runs/dit-20261202-090000"
    config, _, given = train.args
    assert (config["run_name"], config["resume"], config["steps"]) == ("dit-20261202-090000", True, 40)
    assert {"resume", "run_name", "steps"} <= set(given)
    # a run where a checkpoint is asked for: the classifier run's checkpoint in the Volume
    assert evaluated.args[0]["classifier_checkpoint"] == "/runs/classifier-20261202-100000/checkpoints/step_0000020.pt"


def test_an_ambiguous_run_on_the_volume_is_one_line(volume_runs, dirs):
    code, output = volume_runs.invoke(["modal_app/train.py", "fetch", "dit"])
    assert code == 2
    assert output.strip() == (
        "modal_app/train.py fetch: error: fetch dit: 2 runs match (dit-20261201-090000, dit-20261202-090000); "
        "pass more of the name"
    )
    assert volume_runs.sent == []
