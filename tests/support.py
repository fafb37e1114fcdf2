"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = (
    "pyproject.toml",
    "requirements-modal.txt",
    "docker/Dockerfile",
    "compose.yaml",
    "compose.cpu.yaml",
    "compose.multinode.yaml",
    "compose.nodes.yaml",
    "docker/image.env",
    ".dockerignore",
)
PROJECT_DIRS = ("modal_app",)  # the Modal app parity imports

# Env values a person may write that mean something to a shell, a Dockerfile or YAML: each reaches both
# images as written, as one ENV value, and adds no instruction.
LITERAL_ENV_VALUES = [
    "a b",
    "quote \" and ' single",
    "dollar $HOME and $(id) and `id`",
    "; echo pwned && rm -rf / | sh > /etc/passwd",
    "# not a comment",
    "*.png ~ % ! < >",
    "",
]


def copy_project(dest: Path) -> Path:
    """A copy of this project's environment files, with a stand-in src/, safe to plant drift in."""
    for name in PROJECT_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "src" / "tandem").mkdir(parents=True)
    (dest / "src" / "tandem" / "__init__.py").write_text("")
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def train_in_background(kind: str, config, until_lines: int, timeout: float = 120):
    """`python -m tandem train KIND` for `config` in a child process (one thread), returned once its
    metrics.jsonl holds `until_lines` records: training is under way (and past a checkpoint, if asked)."""
    import os
    import subprocess
    import sys
    import time

    from tandem.train.flags import config_to_argv

    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", "train", kind, *config_to_argv(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    metrics = Path(config.runs_dir) / config.run_name / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not (metrics.exists() and metrics.read_text().count("\n") >= until_lines):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    return proc


def wait_for(condition, timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1 (a rendezvous for test nodes)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_pids(marker: str) -> list[int]:
    """Living processes whose command line holds `marker` (the job's run name or script)."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                if "\nState:\tZ" not in (entry / "status").read_text():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def read_only_mount(folder: Path, files: dict[str, bytes] | None = None):
    """A real read-only file system at `folder` (a tmpfs, holding `files`), unmounted afterwards. Root
    ignores a folder's modes, so only a read-only mount makes writes fail as they do on one; the test is
    skipped where mounting is not permitted."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a file system here: {mounted.stderr.decode().strip()}")
    try:
        for name, data in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)
