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

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tandem.env.settings import LOCK
from tandem.errors import UsageError
from tandem.files import write_text_atomic

DEV_LOCK = "requirements-dev.txt"

HASH = re.compile(r"sha256:[0-9a-f]{64}")  # what uv writes, and pip checks
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
    try:
        content = path.read_text()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file; run `tandem lock` to regenerate it") from None
    pins: list[Pin] = []
    for start, text in _logical_lines(content):
        head, *hash_parts = re.split(r"\s+--hash=", text)
        requirement, _, marker = head.partition(";")
        pin = _exact_pin(head)
        if pin is None:
            raise UsageError(
                f"{path}:{start}: {requirement.strip()!r} is not pinned with '=='; "
                "edit the input in pyproject.toml and run `tandem lock`"
            )
        name, version = pin
        if not hash_parts:
            raise UsageError(f"{path}:{start}: {name} has no --hash lines; run `tandem lock` to regenerate with hashes")
        hashes = tuple(h.strip() for h in hash_parts)
        for digest in hashes:
            if not HASH.fullmatch(digest):
                raise UsageError(
                    f"{path}:{start}: {name} has the hash {digest[:80]!r}, not sha256:<64 hex digits>; "
                    "run `tandem lock` to regenerate it"
                )
        pins.append(Pin(name=name, version=version, marker=marker.strip(), hashes=hashes, line=start))
    if not pins:
        raise UsageError(f"{path} pins nothing; run `tandem lock`")
    return pins


def file_sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def compile_locks(root: Path, python: str) -> list[Path]:
    """Re-compile the runtime lock from pyproject.toml, then the dev lock constrained by it: both are
    compiled in a scratch copy of the project and replace the committed ones only when both succeeded.

    Existing pins are preferred (uv reads the output file), so only what the input changed moves.
    """
    with tempfile.TemporaryDirectory() as scratch:
        work = _compile_in_copy(root, Path(scratch), python)
        for name in (LOCK, DEV_LOCK):
            read_lock(work / name)  # both are well formed before either is replaced
        for name in (LOCK, DEV_LOCK):
            write_text_atomic(root / name, (work / name).read_text())
    return [root / LOCK, root / DEV_LOCK]


def stale_locks(root: Path, python: str) -> list[str]:
    """Compile into a scratch copy of the project and report each lock whose pins would change."""
    with tempfile.TemporaryDirectory() as scratch:
        work = _compile_in_copy(root, Path(scratch), python)
        return [
            name
            for name in (LOCK, DEV_LOCK)
            if not (root / name).exists() or _pins_text(root / name) != _pins_text(work / name)
        ]


def _compile_in_copy(root: Path, work: Path, python: str) -> Path:
    for name in ("pyproject.toml", LOCK, DEV_LOCK):
        if (root / name).exists():
            shutil.copy2(root / name, work / name)
    base = [_uv(), "pip", "compile", *COMPILE_FLAGS, "--python-version", python]
    _run([*base, "pyproject.toml", "-o", LOCK], work, LOCK)
    _run([*base, "--group", "pyproject.toml:dev", "-c", LOCK, "-o", DEV_LOCK], work, DEV_LOCK)
    return work


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


def _exact_pin(line: str) -> tuple[str, str] | None:
    """(normalised name, version) of a requirement pinned to one version with `==`, else None."""
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return None
    specifiers = list(requirement.specifier)
    if requirement.url or len(specifiers) != 1:
        return None
    (specifier,) = specifiers
    if specifier.operator != "==" or specifier.version.endswith(".*"):
        return None
    return canonicalize_name(requirement.name), specifier.version


def _uv() -> str:
    found = shutil.which("uv")
    if not found:
        raise UsageError("uv is not installed; install it with `python -m pip install uv`")
    return found


def _run(cmd: list[str], cwd: Path, output: str) -> None:
    env = {**os.environ, "UV_CUSTOM_COMPILE_COMMAND": "tandem lock"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise UsageError(f"uv pip compile could not make {output}, so no lock was written: {uv_problem(result.stderr)}")


def uv_problem(stderr: str) -> str:
    """uv's explanation of a failure on one line: what failed and the resolver's reasons, not its hints."""
    reasons = []
    for line in stderr.splitlines():
        line = line.strip().lstrip("×╰─▶│ ").strip()
        if line.startswith("hint:"):
            break
        line = re.sub(r"^(error|cause|caused by):\s*", "", line, flags=re.IGNORECASE)
        if line and not line.startswith("warning:"):
            reasons.append(line)
    if not reasons:
        return "no output"
    return reasons[0].rstrip(":") + (": " + " ".join(reasons[1:]) if reasons[1:] else "")
