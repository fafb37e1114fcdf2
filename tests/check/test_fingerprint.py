import json

from tandem.cli import main


def test_two_runs_in_one_environment_match_and_a_planted_variable_is_named(tmp_path, monkeypatch, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["check", "--label", "a", "--out", str(a)]) == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["check", "--label", "b", "--out", str(b)]) == 0
    fingerprint = json.loads(a.read_text())
    assert len(fingerprint["cpu"]["dit"]["losses"]) == 6
    assert fingerprint["environment"]["distributions"]["locked"]["torch"]["matches_lock"]
    capsys.readouterr()
    # Same machine, same libraries: every loss and digest is bit-identical; only the planted variable differs.
    assert main(["check", "--compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "env OMP_NUM_THREADS" in out and "cpu dit losses" not in out and "params" not in out
    fingerprint_b = json.loads(b.read_text())
    assert fingerprint_b["cpu"] == fingerprint["cpu"]
