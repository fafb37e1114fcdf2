"""The run directory: one writer (an OS lock that dies with its holder), files read defensively."""

import json
import os
import signal
import subprocess
import sys

import pytest

from support import train_in_background
from tandem.cli import main
from tandem.errors import UsageError
from tandem.train.flags import config_to_argv
from tandem.train.run import RunDir, RunLock

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_bad_metrics_lines_are_reported_by_number_and_skipped(tmp_path):
    run = RunDir(tmp_path)
    lines = ['{"step": 1, "loss": 2.0}', "null", "garbage", '{"step": "x"}', "[1]", "", '{"step": 2, "loss": 1.0}']
    run.metrics_path.write_text("\n".join(lines) + "\n")
    reported = []
    assert run.read_metrics(report=reported.append) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    assert [line.split(": ")[0] for line in reported] == [f"{run.metrics_path}:{n}" for n in (2, 3, 4, 5)]
    assert "not a metrics record ('null'); skipped" in reported[0]


def test_a_null_line_in_metrics_never_breaks_a_resume(fast_flags, runs_dir, capsys):
    assert main(["train", "dit", *fast_flags(run_name="n", steps=4, checkpoint_every=2, stop_after=2)]) == 0
    metrics = runs_dir / "n" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "null", *lines[1:], '{"step": 2, "lo']) + "\n")
    capsys.readouterr()
    assert main(["train", "dit", "--resume", "--run-name", "n", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{metrics}:2: not a metrics record ('null'); skipped" in out
    assert f"{metrics}:{len(lines) + 2}: not a metrics record" in out
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]


def test_config_json_is_rewritten_only_after_the_rest(fast_flags, runs_dir, monkeypatch):
    assert main(["train", "dit", *fast_flags(run_name="w", steps=4, checkpoint_every=2, stop_after=2)]) == 0
    before = (runs_dir / "w" / "config.json").read_bytes()

    def full(self, step, records=None):
        raise OSError(28, "No space left on device", str(self.metrics_path))

    monkeypatch.setattr(RunDir, "rewind_metrics", full)
    argv = ["train", "dit", "--resume", "--run-name", "w", "--runs-dir", str(runs_dir), "--steps", "6"]
    assert main(argv) == 1
    assert (runs_dir / "w" / "config.json").read_bytes() == before


HOLD = "import sys, time; from tandem.train.run import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UsageError, match=f"is being written by process {holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no handler runs, the kernel drops the lock
        holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    lock.release()


def test_two_processes_on_one_run(dit_config, runs_dir, capsys):
    config = dit_config(run_name="busy", steps=100_000, checkpoint_every=3)
    first = train_in_background("dit", config, until_lines=4)
    before = (runs_dir / "busy" / "config.json").read_bytes()

    capsys.readouterr()
    assert main(["train", "dit", *config_to_argv(config), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is being written by process {first.pid} " in err[0]
    assert (runs_dir / "busy" / "config.json").read_bytes() == before

    first.send_signal(signal.SIGTERM)  # the first is unharmed: it checkpoints and stops as asked
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and "stopped at step" in out, out
    records = [json.loads(line) for line in (runs_dir / "busy" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps)) and [r["status"] for r in records if r.get("final")] == ["stopped"]


def test_a_run_name_is_one_directory_name(dit_config):
    for name in ("../x", "a/b", ".hidden", "/abs", ".."):
        with pytest.raises(UsageError, match="not a plain directory name"):
            RunDir.new_path(dit_config().runs_dir, "dit", name)


def test_the_history_of_an_attempt_started_over_is_set_aside(tmp_path):
    run = RunDir(tmp_path)
    assert run.set_aside_history() == []  # nothing yet
    run.metrics_path.write_text('{"step": 1, "loss": 2.0}\n')
    (run.samples_dir).mkdir()
    (run.samples_dir / "step_0000001.png").write_bytes(b"grid")
    assert [p.name for p in run.set_aside_history()] == ["metrics.jsonl.unusable", "samples.unusable"]
    assert (tmp_path / "metrics.jsonl.unusable").read_text() == '{"step": 1, "loss": 2.0}\n'
    assert (tmp_path / "samples.unusable" / "step_0000001.png").read_bytes() == b"grid"
    assert not run.metrics_path.exists() and not run.samples_dir.exists()


def test_stale_temporaries_go_and_those_being_written_stay(tmp_path):
    run = RunDir(tmp_path)
    run.samples_dir.mkdir(parents=True)
    run.checkpoints.directory.mkdir()
    dead = 999_999_999  # above any pid_max: no such process
    stale = [
        run.samples_dir / f".step_0000010.png.{dead}.tmp",  # a grid write killed
        tmp_path / f".config.json.{dead}.tmp",
        run.checkpoints.directory / f".step_0000010.pt.{dead}.tmp",
    ]
    live = run.samples_dir / f".sample_step_0000010_heun_16steps_cfg1.5_seed0.png.{os.getppid()}.tmp"
    for path in [*stale, live]:
        path.write_bytes(b"half")
    run.remove_stale_temporaries()
    assert [p.exists() for p in stale] == [False, False, False]
    assert live.exists()  # its writer (a `tandem sample`, say) is still running
