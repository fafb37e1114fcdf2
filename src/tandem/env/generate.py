"""Every file `tandem render` writes, written atomically, and the diff that says one is stale."""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from tandem.env.compose import render_compose, render_compose_cpu, render_env_file
from tandem.env.dockerfile import render
from tandem.env.settings import Project


def generated_files(project: Project) -> dict[Path, str]:
    return {
        project.dockerfile_path: render(project),
        project.root / "compose.yaml": render_compose(project),
        project.root / "compose.cpu.yaml": render_compose_cpu(),
        project.root / "docker" / "image.env": render_env_file(project),
    }


def write_generated(project: Project) -> list[Path]:
    files = generated_files(project)  # render everything first: a bad input writes nothing
    for path, text in files.items():
        write_atomic(path, text)
    return list(files)


def staleness_diff(project: Project) -> str:
    """A unified diff from the files on disk to a fresh render; empty when all are fresh."""
    chunks = []
    for path, fresh in generated_files(project).items():
        current = path.read_text() if path.exists() else ""
        name = path.relative_to(project.root)
        chunks += difflib.unified_diff(
            current.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{name} (on disk)",
            tofile=f"{name} (tandem render)",
        )
    return "".join(chunks)


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
