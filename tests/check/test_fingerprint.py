import json

import pytest

from tandem.check import behaviour
from tandem.cli import main

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`


def test_two_runs_in_one_environment_match_and_a_planted_variable_is_named(tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["check", "--label", "a", "--out", str(a)]) == 0
    printed = capsys.readouterr()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["check", "--label", "b", "--out", str(b)]) == 0
    fingerprint = json.loads(a.read_text())
    assert len(fingerprint["cpu"]["dit"]["losses"]) == 6
    assert fingerprint["environment"]["distributions"]["locked"]["torch"]["matches_lock"]
    # what is printed is the fingerprint's summary, not the inner training runs' logs
    lines = printed.out.splitlines()
    dit = fingerprint["cpu"]["dit"]
    assert lines[0] == f"fingerprint 'a' written to {a}"
    assert [line.split()[0] for line in lines[1:-1]] == ["environment", "packages", "cpu", "cpu", "gpu"]
    assert f"loss {dit['losses'][0]:.4f} -> {dit['losses'][-1]:.4f}, params {dit['params_sha256'][7:19]}" in lines[4]
    assert "tandem-check-" not in printed.out + printed.err and "forced by --device" not in printed.out
    assert printed.err == ""
    capsys.readouterr()
    # Same machine, same libraries: every loss and digest is bit-identical; only the planted variable differs.
    assert main(["check", "--compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "env OMP_NUM_THREADS" in out and "cpu dit losses" not in out and "params" not in out
    fingerprint_b = json.loads(b.read_text())
    assert fingerprint_b["cpu"] == fingerprint["cpu"]


def test_a_failing_inner_run_shows_its_log(monkeypatch, capsys):
    def broken(kind, config):
        print(f"run: {config.runs_dir}/check")
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(behaviour, "run_training", broken)
    with pytest.raises(RuntimeError, match="kernel exploded"):
        behaviour.collect_behaviour("cpu")
    assert "tandem-check-" in capsys.readouterr().err
