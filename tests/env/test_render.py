import os
import signal
import stat
import subprocess
import sys

import pytest

from support import REPO, edit
from tandem import files
from tandem.env.render import staleness_diff, write_generated
from tandem.env.settings import load_project
from tandem.errors import UsageError


def test_committed_generated_files_are_fresh():
    assert staleness_diff(load_project(REPO)) == ""


def test_settings_edit_makes_dockerfile_stale_with_a_diff(project_dir):
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    diff = staleness_diff(load_project(project_dir))
    assert "-    HF_XET_HIGH_PERFORMANCE=1" in diff and "+    HF_XET_HIGH_PERFORMANCE=0" in diff
    write_generated(load_project(project_dir))
    assert staleness_diff(load_project(project_dir)) == ""


def test_bad_lock_writes_nothing(project_dir):
    before = {p: p.read_text() for p in (project_dir / "docker/Dockerfile", project_dir / "compose.yaml")}
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    (project_dir / "requirements-modal.txt").write_text("torch>=2\n")
    with pytest.raises(UsageError, match="not pinned"):
        write_generated(load_project(project_dir))
    assert {p: p.read_text() for p in before} == before
    assert not list(project_dir.glob("**/.Dockerfile.*")) and not list(project_dir.glob(".compose*"))


def test_generated_files_keep_the_modes_a_plain_write_gives(project_dir):
    old_umask = os.umask(0o022)
    try:
        (project_dir / "compose.yaml").unlink()
        (project_dir / "docker" / "Dockerfile").chmod(0o664)
        write_generated(load_project(project_dir))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((project_dir / "compose.yaml").stat().st_mode) == 0o644  # new: 0666 less the umask
    assert stat.S_IMODE((project_dir / "docker" / "Dockerfile").stat().st_mode) == 0o664  # kept


def test_no_temporary_outlives_its_write(project_dir, monkeypatch):
    # One left by a render killed outright (its process is gone) is removed by the next write.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stray = project_dir / "docker" / f".Dockerfile.{dead.stdout.strip()}.tmp"
    stray.write_text("half")
    write_generated(load_project(project_dir))
    assert not stray.exists()

    # A write interrupted (Ctrl-C, SIGTERM, an error) removes its own.
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_generated(load_project(project_dir))
    monkeypatch.undo()
    assert not list(project_dir.rglob(".*.tmp"))


def test_sigterm_during_a_render_leaves_no_temporary(project_dir):
    # The write is slowed so the signal lands inside it.
    script = (
        "import sys, time; from tandem import files; real = files.os.fsync\n"
        "files.os.fsync = lambda fd: (print('writing', flush=True), time.sleep(30))\n"
        "files.write_text_atomic(sys.argv[1], 'new')\n"
    )
    target = project_dir / "compose.yaml"
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not list(project_dir.glob(".compose.yaml.*")) and target.read_text() != "new"


PLANTED = [
    # (the settings line as planted, the key the one-line refusal names)
    ('PYTHONUNBUFFERED = "1\\nRUN echo pwned"', "env.PYTHONUNBUFFERED"),
    ('PYTHONUNBUFFERED = "1\\rRUN echo pwned"', "env.PYTHONUNBUFFERED"),
    ('"PYTHONUNBUFFERED\\nRUN echo pwned" = "1"', "env key 'PYTHONUNBUFFERED\\nRUN echo pwned'"),
    ('PYTHONUNBUFFERED = "1 \\\\"', "env.PYTHONUNBUFFERED"),
]


@pytest.mark.parametrize("planted, key", PLANTED)
@pytest.mark.parametrize("command", [["render"], ["render", "--check"], ["parity"]])
def test_an_injected_setting_stops_render_and_parity_in_one_line_naming_the_key(
    project_dir, planted, key, command, capsys
):
    from tandem.cli import main

    edit(project_dir / "pyproject.toml", 'PYTHONUNBUFFERED = "1"', planted)
    generated = {p: p.read_bytes() for p in project_dir.rglob("*") if p.is_file() and p.name != "pyproject.toml"}
    assert main([*command, "--project", str(project_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(
        f"tandem {command[0]}: error: {project_dir / 'pyproject.toml'} [tool.tandem.image]: {key}"
    )
    assert {p: p.read_bytes() for p in generated} == generated


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('workdir = "/app"', 'workdir = "/app; rm -rf /"', "workdir"),
        ('apt_packages = ["gcc", "libc6-dev"]', 'apt_packages = ["gcc", "libc6-dev\\nRUN echo pwned"]', "apt_packages"),
        ('base_image = "python:3.11-slim-bookworm"', 'base_image = "python:3.11-slim-bookworm\\nRUN x"', "base_image"),
        ('uv_version = "0.13.9"', 'uv_version = "0.13.9 && echo pwned"', "uv_version"),
        ('python = "3.11"', 'python = "3.11$(id)"', "python"),
        ("modal_secrets = []", 'modal_secrets = ["wandb\\u0000"]', "modal_secrets"),
    ],
)
def test_render_refuses_an_injected_field_and_writes_nothing(project_dir, old, new, key, capsys):
    from tandem.cli import main

    edit(project_dir / "pyproject.toml", old, new)
    before = (project_dir / "docker" / "Dockerfile").read_bytes()
    assert main(["render", "--project", str(project_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"[tool.tandem.image]: {key} must be " in err
    assert (project_dir / "docker" / "Dockerfile").read_bytes() == before


def test_render_names_a_file_in_the_way_and_writes_nothing(project_dir, capsys):
    from tandem.cli import main

    (project_dir / "docker" / "Dockerfile").unlink()
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    (project_dir / "compose.yaml").unlink()
    (project_dir / "compose.yaml").mkdir()
    before = (project_dir / "docker" / "image.env").read_bytes()
    assert main(["render", "--project", str(project_dir)]) == 2
    assert capsys.readouterr().err == (
        f"tandem render: error: cannot write {project_dir / 'compose.yaml'}: it is a directory; name a file inside it\n"
    )
    assert not (project_dir / "docker" / "Dockerfile").exists()
    assert (project_dir / "docker" / "image.env").read_bytes() == before
