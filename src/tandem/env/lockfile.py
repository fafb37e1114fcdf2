"""The hash-locked requirements file: parsing, validation, and re-compiling it with uv."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tandem.env.settings import LOCK
from tandem.errors import UsageError

DEV_LOCK = "requirements-dev.txt"

# The one command that makes the lock: universal (Linux x86_64/arm64, macOS), Python >= settings.python.
COMPILE_FLAGS = ("--universal", "--generate-hashes", "--quiet")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]
    line: int


def read_lock(path: Path) -> list[Pin]:
    """Every requirement pinned with `==` and carrying `--hash` lines, or a UsageError naming the line."""
    if not path.is_file():
        raise UsageError(f"{path} not found: run `tandem lock` to compile it")
    pins: list[Pin] = []
    for start, text in _logical_lines(path.read_text()):
        head, *hash_parts = re.split(r"\s+--hash=", text)
        requirement, _, marker = head.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", requirement.strip())
        if not match:
            raise UsageError(
                f"{path}:{start}: {requirement.strip()!r} is not pinned with '=='; "
                "edit the input in pyproject.toml and run `tandem lock`"
            )
        if not hash_parts:
            raise UsageError(
                f"{path}:{start}: {match.group(1)} has no --hash lines; run `tandem lock` to regenerate with hashes"
            )
        pins.append(
            Pin(
                name=_normalise(match.group(1)),
                version=match.group(3),
                marker=marker.strip(),
                hashes=tuple(h.strip() for h in hash_parts),
                line=start,
            )
        )
    if not pins:
        raise UsageError(f"{path} pins nothing; run `tandem lock`")
    return pins


def file_sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def compile_locks(root: Path, python: str) -> list[Path]:
    """Re-compile the runtime lock from pyproject.toml, then the dev lock constrained by it.

    Existing pins are preferred (uv reads the output file), so only what the input changed moves.
    """
    base = [_uv(), "pip", "compile", *COMPILE_FLAGS, "--python-version", python]
    _run([*base, "pyproject.toml", "-o", LOCK], root)
    _run([*base, "--group", "pyproject.toml:dev", "-c", LOCK, "-o", DEV_LOCK], root)
    return [root / LOCK, root / DEV_LOCK]


def stale_locks(root: Path, python: str) -> list[str]:
    """Compile into a scratch copy of the project and report each lock whose pins would change."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name in ("pyproject.toml", LOCK, DEV_LOCK):
            if (root / name).exists():
                shutil.copy2(root / name, work / name)
        compile_locks(work, python)
        return [
            name
            for name in (LOCK, DEV_LOCK)
            if not (root / name).exists() or _pins_text(root / name) != _pins_text(work / name)
        ]


def _pins_text(path: Path) -> list[str]:
    # Comments (uv's header, "via" notes) may differ between machines; pins and hashes may not.
    return [line for _, line in _logical_lines(path.read_text())]


def _logical_lines(text: str):
    start, buffer = 0, ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() and not buffer:
            continue
        if not buffer:
            start = number
        buffer += " " + line.strip().rstrip("\\")
        if not line.endswith("\\"):
            yield start, buffer.strip()
            buffer = ""
    if buffer:
        yield start, buffer.strip()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _uv() -> str:
    found = shutil.which("uv")
    if not found:
        raise UsageError("uv is not installed; install it with `python -m pip install uv`")
    return found


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": "tandem lock"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"uv pip compile failed in {cwd}: {last}")
