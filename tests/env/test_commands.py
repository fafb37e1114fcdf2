"""`tandem render|lock|parity` work on the project they are run in: found from the current directory."""

from pathlib import Path

import pytest

from support import REPO, edit
from tandem.cli import main


@pytest.fixture
def inside_copy(project_dir, monkeypatch):
    monkeypatch.delenv("TANDEM_PROJECT_DIR", raising=False)
    monkeypatch.chdir(project_dir / "src")
    return project_dir


def test_render_check_catches_a_stale_dockerfile_in_the_copy_it_runs_in(inside_copy, capsys):
    edit(inside_copy / "docker" / "Dockerfile", "USER tandem", "USER root")
    original = (REPO / "docker" / "Dockerfile").read_bytes()
    assert main(["render", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "-USER root\n+USER tandem\n" in out
    assert err == f"stale in {inside_copy.resolve()}: docker/Dockerfile; run `tandem render` and commit the result\n"
    assert main(["render"]) == 0
    assert "USER tandem" in (inside_copy / "docker" / "Dockerfile").read_text()
    assert (REPO / "docker" / "Dockerfile").read_bytes() == original
    assert main(["render", "--check"]) == 0


@pytest.mark.parametrize("command", [["render", "--check"], ["lock", "--check"], ["parity"], ["doctor"]])
def test_outside_a_project_every_command_says_where_to_run(tmp_path, monkeypatch, capsys, command):
    monkeypatch.delenv("TANDEM_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err == (
        f"tandem {command[0]}: error: no tandem project in {Path(tmp_path).resolve()} or above (no "
        "pyproject.toml with a [tool.tandem.image] table); cd into the project or pass --project DIR\n"
    )


def test_parity_without_its_parser_names_the_install_command(inside_copy, monkeypatch, capsys):
    import sys

    for name in ("tandem.env.parity", "tandem.env.image_facts"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "dockerfile", None)  # as where no wheel was installed
    assert main(["parity"]) == 2
    err = capsys.readouterr().err
    assert "install it with `uv pip install dockerfile`" in err and err.count("\n") == 1
