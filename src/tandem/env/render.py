"""Every file `tandem render` writes, written atomically, and the diff that says one is stale."""

from __future__ import annotations

import difflib
from pathlib import Path

from tandem.env.compose import (
    render_compose,
    render_compose_cpu,
    render_compose_multinode,
    render_compose_nodes,
    render_env_file,
)
from tandem.env.dockerfile import render
from tandem.env.image_steps import render_dockerignore
from tandem.env.settings import Project
from tandem.files import check_writable, write_text_atomic


def generated_files(project: Project) -> dict[Path, str]:
    return {
        project.dockerfile_path: render(project),
        project.root / "compose.yaml": render_compose(project),
        project.root / "compose.cpu.yaml": render_compose_cpu(),
        project.root / "compose.multinode.yaml": render_compose_multinode(project),
        project.root / "compose.nodes.yaml": render_compose_nodes(),
        project.root / "docker" / "image.env": render_env_file(project),
        project.root / ".dockerignore": render_dockerignore(),
    }


def write_generated(project: Project) -> list[Path]:
    files = generated_files(project)  # render everything first: a bad input writes nothing
    for path in files:  # and check every place first: a file or folder in the way writes nothing either
        check_writable(path, parents=True)
    for path, text in files.items():
        write_text_atomic(path, text, parents=True)
    return list(files)


def staleness_diff(project: Project) -> str:
    """A unified diff from the files on disk to a fresh render; empty when all are fresh."""
    chunks = []
    for path, fresh in generated_files(project).items():
        current = path.read_bytes().decode(errors="replace") if path.is_file() else ""
        name = path.relative_to(project.root)
        chunks += difflib.unified_diff(
            current.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{name} (on disk)",
            tofile=f"{name} (tandem render)",
        )
    return "".join(chunks)
