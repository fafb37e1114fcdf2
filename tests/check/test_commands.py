"""`tandem check`: the fingerprint's label and output path are checked before any work, in one line."""

import pytest

from support import read_only_mount
from tandem.check import fingerprint
from tandem.cli import main


@pytest.fixture(autouse=True)
def no_collecting(monkeypatch):
    """Every case here is refused before the fingerprint is collected (minutes of training)."""

    def collected(**kwargs):
        raise AssertionError("the fingerprint was collected before the refusal")

    monkeypatch.setattr(fingerprint, "collect_fingerprint", collected)


def refusal(argv, capsys) -> str:
    assert main(["check", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    return captured.err.removeprefix("tandem check: error: ").rstrip("\n")


@pytest.mark.parametrize("label", ["../../../x", "a/b", "/etc/x", ".hidden", "..", "", "a b", "x\ny", "é"])
def test_a_label_is_a_plain_name_confined_to_the_fingerprints_folder(label, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(tmp_path / "runs"))
    if label == "":  # the default label then applies, and is a plain name: collecting starts
        with pytest.raises(AssertionError, match="collected"):
            main(["check", "--label", label])
        return
    assert refusal(["--label", label], capsys) == (
        f"--label {label!r} is not a plain name (letters, digits, '.', '_', '-', not starting with '.'); "
        "pick one such as 'docker', or write elsewhere with --out"
    )
    assert list(tmp_path.rglob("*")) == []


def test_out_a_directory_is_refused(tmp_path, capsys):
    assert (
        refusal(["--out", str(tmp_path)], capsys)
        == f"cannot write {tmp_path}: it is a directory; name a file inside it"
    )


def test_out_in_a_missing_folder_is_refused_and_the_folder_not_made(tmp_path, capsys):
    out = tmp_path / "no" / "dir" / "fp.json"
    message = refusal(["--out", str(out)], capsys)
    assert message == f"cannot write {out}: there is no folder {out.parent}; create it first"
    assert not (tmp_path / "no").exists()


def test_out_on_a_read_only_file_system_is_refused(tmp_path, capsys):
    with read_only_mount(tmp_path / "ro") as ro:
        message = refusal(["--out", str(ro / "fp.json")], capsys)
    assert message == f"cannot write {ro / 'fp.json'}: {ro} is on a read-only file system"


def test_the_default_place_on_a_read_only_runs_dir_is_refused(tmp_path, monkeypatch, capsys):
    with read_only_mount(tmp_path / "runs") as runs:
        monkeypatch.setenv("TANDEM_RUNS_DIR", str(runs))
        message = refusal(["--label", "docker"], capsys)
    assert message == f"cannot write {runs / 'fingerprints' / 'docker.json'}: {runs} is on a read-only file system"
