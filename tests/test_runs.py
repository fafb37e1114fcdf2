"""Listing runs (`tandem runs`) and naming them (--run: a full name, a unique prefix, latest, latest:<kind>)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tandem.cli import main
from tandem.errors import UsageError
from tandem.runs import RunsFolder, age, list_runs, resolve, resolve_path, size_text


def make_run(root, name, kind, *, written, steps=None, records=(), result=None, checkpoints=(), total=None):
    """A run folder as the trainers leave it, last written `written` seconds ago."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    record = {"kind": kind, "config": {"steps": steps} if steps else {}}
    if total:
        record["total_steps"] = total
    files = {"config.json": json.dumps(record), "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in records)}
    if result:
        files["result.json"] = json.dumps(result)
    for step in checkpoints:
        files[f"checkpoints/step_{step:07d}.pt"] = "x" * 1000
    now = time.time()
    for relative, text in files.items():
        (run / relative).write_text(text)
        os.utime(run / relative, (now - written, now - written))
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_run(
        root,
        "dit-20261201-090000",
        "dit",
        written=3 * 86400,
        steps=600,
        records=[{"step": 10, "loss": 1.5}, {"step": 600, "loss": 0.4125}, {"step": 600, "final": True}],
        result={"status": "completed", "step": 600},
        checkpoints=[500, 600],
    )
    make_run(
        root,
        "dit-20261202-090000",
        "dit",
        written=2 * 3600,
        steps=600,
        records=[{"step": 10, "loss": 1.6}, {"step": 200, "loss": 0.9}],
        checkpoints=[200],
    )
    make_run(
        root,
        "classifier-20261202-100000",
        "classifier",
        written=300,
        total=75,
        records=[{"step": 75, "loss": 0.6, "val_acc": 0.97}, {"step": 75, "final": True, "test_acc": 0.9861}],
        result={"status": "completed", "step": 75},
        checkpoints=[75],
    )
    (root / "fingerprints").mkdir()  # `tandem check` writes here: not a run
    return root


def test_runs_are_listed_newest_first_with_status_step_metric_age_and_size(runs):
    listed = list_runs(RunsFolder(runs))
    assert [(r.name, r.kind, r.status, r.step, r.total, r.metric, r.value, r.checkpoint) for r in listed] == [
        ("classifier-20261202-100000", "classifier", "completed", 75, 75, "test_acc", 0.9861, 75),
        ("dit-20261202-090000", "dit", "interrupted", 200, 600, "loss", 0.9, 200),
        ("dit-20261201-090000", "dit", "completed", 600, 600, "loss", 0.4125, 600),
    ]
    assert [round(time.time() - r.updated) for r in listed] == [300, 7200, 259200]
    assert [r.name for r in list_runs(RunsFolder(runs), "dit")] == ["dit-20261202-090000", "dit-20261201-090000"]


def test_a_run_whose_lock_is_held_is_running(runs):
    from tandem.train.run import RunLock

    lock = RunLock(runs / "dit-20261202-090000")
    lock.acquire()
    try:
        assert list_runs(RunsFolder(runs), "dit")[0].status == "running"
    finally:
        lock.release()
    assert list_runs(RunsFolder(runs), "dit")[0].status == "interrupted"


def test_the_table_and_json_of_tandem_runs(runs, capsys):
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "kind", "status", "step", "key", "metric", "age", "size"]
    assert lines[2].split()[:7] == [
        "classifier-20261202-100000",
        "classifier",
        "completed",
        "75/75",
        "test_acc",
        "98.61%",
        "5m",
    ]
    assert lines[3].split()[:7] == ["dit-20261202-090000", "dit", "interrupted", "200/600", "loss", "0.9", "2h"]
    assert lines[4].split()[:7] == ["dit-20261201-090000", "dit", "completed", "600/600", "loss", "0.4125", "3d"]
    assert len(lines) == 5

    assert main(["runs", "--runs-dir", str(runs), "--json", "--kind", "classifier"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "classifier-20261202-100000" and listed["status"] == "completed"
    assert (listed["step"], listed["total"], listed["metric"], listed["value"]) == (75, 75, "test_acc", 0.9861)
    assert 299 <= listed["age_s"] <= 400 and listed["size"] > 1000


def test_no_runs_yet(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path / 'none'} yet\n"


@pytest.mark.parametrize(
    ("ref", "kind", "expected"),
    [
        ("dit-20261201-090000", None, "dit-20261201-090000"),  # the full name
        ("dit-20261201", None, "dit-20261201-090000"),  # a unique prefix
        ("class", None, "classifier-20261202-100000"),
        ("latest", None, "classifier-20261202-100000"),  # the run written most recently
        ("latest", "dit", "dit-20261202-090000"),  # ... of the kind the command takes
        ("latest:dit", None, "dit-20261202-090000"),
        ("latest:classifier", "classifier", "classifier-20261202-100000"),
    ],
)
def test_a_run_is_named_by_its_name_a_prefix_or_latest(runs, ref, kind, expected):
    assert resolve(ref, RunsFolder(runs), kind) == expected


@pytest.mark.parametrize(
    ("ref", "kind", "message"),
    [
        (
            "dit-2026",
            None,
            "--run dit-2026: 2 runs match (dit-20261201-090000, dit-20261202-090000); pass more of the name",
        ),
        (
            "nope",
            None,
            "--run nope: no such run in {runs}; its runs, newest first: classifier-20261202-100000, "
            "dit-20261202-090000, dit-20261201-090000",
        ),
        (
            "nope",
            "dit",
            "--run nope: no such run in {runs}; its dit runs, newest first: dit-20261202-090000, dit-20261201-090000",
        ),
        ("latest:classifier", "dit", "--run latest:classifier: this takes a dit run; use latest or latest:dit"),
        ("latest:vae", None, "--run latest:vae: no kind 'vae'; use latest, latest:dit or latest:classifier"),
        (
            "fingerprints/x",
            None,
            "--run fingerprints/x: no such directory; pass a run directory, a run's name or latest",
        ),
    ],
)
def test_an_ambiguous_or_unknown_run_is_one_line_with_the_candidates(runs, ref, kind, message, monkeypatch):
    monkeypatch.chdir(runs)
    with pytest.raises(UsageError) as refused:
        resolve_path(ref, runs, kind)
    assert str(refused.value) == message.format(runs=runs)


def test_a_path_is_taken_as_it_is(runs):
    assert resolve_path(str(runs / "dit-20261201-090000"), "elsewhere") == runs / "dit-20261201-090000"
    assert resolve_path("dit-20261202", runs) == runs / "dit-20261202-090000"


def test_no_runs_at_all(tmp_path):
    with pytest.raises(UsageError, match=r"^--run latest: no dit run in .* yet; train one first$"):
        resolve("latest", RunsFolder(tmp_path), "dit")


def test_sample_and_train_take_the_same_words_and_refuse_in_one_line(runs, capsys, monkeypatch):
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(runs))
    assert main(["sample", "--run", "dit-2026"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "tandem sample: error: --run dit-2026: 2 runs match (dit-20261201-090000, dit-20261202-090000); pass more of the name\n"
    )
    assert main(["train", "dit", "--run", "class"]) == 2  # a classifier run does not continue as a DiT
    assert capsys.readouterr().err.endswith(
        "classifier-20261202-100000 is a classifier run; continue it with tandem train classifier\n"
    )
    assert main(["train", "dit", "--run", "latest", "--run-name", "other"]) == 2
    assert (
        capsys.readouterr().err
        == "tandem train: error: --run latest names the run to continue; drop --run-name other\n"
    )


def test_units():
    assert [age(s) for s in (5, 61, 7200, 3 * 86400)] == ["5s", "1m", "2h", "3d"]
    assert [size_text(n) for n in (512, 2048, 67_000_000, 201_500_000, 3_200_000_000)] == [
        "512 B",
        "2.0 kB",
        "67 MB",
        "202 MB",
        "3.2 GB",
    ]


def test_tandem_runs_imports_no_torch(runs):
    code = "import sys; from tandem.cli import main; main(sys.argv[1:]); print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code, "runs", "--runs-dir", str(runs)], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines()[-1] == "[]"


def test_a_checkpoint_is_asked_for_as_a_file_or_a_run(runs):
    from tandem.runs import resolve_checkpoint

    clf = runs / "classifier-20261202-100000"
    assert resolve_checkpoint("class", runs, "classifier") == clf / "checkpoints" / "step_0000075.pt"
    (clf / "checkpoints" / "best.pt").write_text("x")  # its best by validation, when it kept one
    assert resolve_checkpoint("latest", runs, "classifier") == clf / "checkpoints" / "best.pt"
    assert resolve_checkpoint(str(clf), "elsewhere") == clf / "checkpoints" / "best.pt"
    file = runs / "dit-20261201-090000" / "checkpoints" / "step_0000500.pt"
    assert resolve_checkpoint(str(file), "elsewhere") == file
    (runs / "empty").mkdir()
    with pytest.raises(UsageError) as refused:
        resolve_checkpoint("empty", runs, flag="--classifier-checkpoint")
    assert str(refused.value) == (
        f"--classifier-checkpoint empty: the run {runs / 'empty'} has saved no checkpoint yet; pass one that has"
    )
    with pytest.raises(UsageError, match=r"^--checkpoint gone\.pt: no such file; pass a checkpoint file, or a run"):
        resolve_checkpoint("gone.pt", runs)


def test_a_reader_that_goes_away_ends_it_quietly(runs):
    """`tandem runs --json | head -1`: no traceback when head stops reading."""
    for i in range(400):  # more than a pipe holds
        (runs / f"extra-{i:03d}").mkdir()
        (runs / f"extra-{i:03d}" / "config.json").write_text(json.dumps({"kind": "dit", "config": {}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "tandem", "runs", "--json", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=60) in (0, 1)
    assert process.stderr.read() == b""
