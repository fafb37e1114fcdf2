"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = (
    "pyproject.toml",
    "requirements-modal.txt",
    "docker/Dockerfile",
    "compose.yaml",
    "compose.cpu.yaml",
    "docker/image.env",
    ".dockerignore",
)
PROJECT_DIRS = ("modal_app",)  # the Modal app parity imports


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
