import os
import shutil

import pytest

from support import REPO
from tandem.env.lockfile import read_lock
from tandem.errors import UsageError

REQUIRED = {"torch": "2.14.1", "torchvision": "0.29.1"}
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_repository_lock_pins_what_the_trainers_need():
    pins = {p.name: p for p in read_lock(REPO / "requirements-modal.txt")}
    for name, version in REQUIRED.items():
        assert pins[name].version == version
    for name in ("pillow", "tqdm", "modal", "numpy", "scikit-learn"):
        assert name in pins and pins[name].hashes
    assert all(h.startswith("sha256:") for p in pins.values() for h in p.hashes)


def test_lock_is_universal():
    markers = " ".join(p.marker for p in read_lock(REPO / "requirements-modal.txt"))
    assert "sys_platform == 'linux'" in markers  # CUDA wheels only where they exist
    assert "python_full_version >= '3.12'" in markers  # resolved for newer Pythons too


def test_line_without_equals_is_refused_with_line_number(tmp_path):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text(f"tqdm==4.66.0 \\\n    --hash={A}\ntorch>=2.0 \\\n    --hash={B}\n")
    with pytest.raises(UsageError, match=r"requirements-modal.txt:3: 'torch>=2.0' is not pinned with '=='"):
        read_lock(lock)


def test_line_without_hashes_is_refused(tmp_path):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text("# header\ntqdm==4.66.0\n")
    with pytest.raises(UsageError, match=r":2: tqdm has no --hash lines; run `tandem lock`"):
        read_lock(lock)


def test_missing_lock_says_how_to_make_it(tmp_path):
    with pytest.raises(UsageError, match="run `tandem lock`"):
        read_lock(tmp_path / "requirements-modal.txt")


def test_markers_and_continuations_parse(tmp_path):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text(f"triton==3.8.0 ; sys_platform == 'linux' \\\n    --hash={A} \\\n    --hash={B}\n    # via torch\n")
    (pin,) = read_lock(lock)
    assert (pin.name, pin.version, pin.marker, pin.hashes) == (
        "triton",
        "3.8.0",
        "sys_platform == 'linux'",
        (A, B),
    )


def test_names_are_normalised_and_extras_kept_out_of_the_name(tmp_path):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text(f"Typing_Extensions[dev]==4.12.2 \\\n    --hash={A}\n")
    (pin,) = read_lock(lock)
    assert (pin.name, pin.version, pin.marker) == ("typing-extensions", "4.12.2", "")


@pytest.mark.parametrize("requirement", ["tqdm==4.*", "tqdm==4.66.0,<5", "tqdm @ https://example.com/tqdm.whl", "tqdm"])
def test_anything_but_one_exact_version_is_refused(tmp_path, requirement):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text(f"{requirement} \\\n    --hash={A}\n")
    with pytest.raises(UsageError, match=r"requirements-modal.txt:1: .* is not pinned with '=='"):
        read_lock(lock)


@pytest.mark.parametrize("digest", ["sha256:ZZZZ", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 64, ""])
def test_a_hash_that_is_not_64_hex_digits_is_refused(tmp_path, digest):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_text(f"tqdm==4.66.0 \\\n    --hash={A} \\\n    --hash={digest}\n")
    with pytest.raises(UsageError, match=r"requirements-modal.txt:1: tqdm has the hash .* not sha256:<64 hex digits>"):
        read_lock(lock)


def test_a_binary_lock_is_refused(tmp_path):
    lock = tmp_path / "requirements-modal.txt"
    lock.write_bytes(bytes(range(256)))
    with pytest.raises(UsageError, match="is not a text file; run `tandem lock`"):
        read_lock(lock)


FAKE_UV = """#!/bin/sh
# uv pip compile ... -o OUT: the runtime lock compiles, the dev lock does not (as a conflict in the dev group)
for last; do :; done
case "$FAIL$last" in
  yesrequirements-dev.txt)
    echo "error: No solution found when resolving dependencies" >&2
    echo "  cause: Because you require tqdm<4 and tqdm==4.70.1, we can conclude that your requirements are unsatisfiable." >&2
    echo "  hint: an unrelated hint" >&2
    exit 1;;
  *) printf 'tqdm==4.70.1 \\\n    --hash=%s\n' "sha256:$(printf 'c%.0s' $(seq 64))" > "$last";;
esac
"""


def test_lock_writes_both_locks_or_neither_and_shows_the_conflict(tmp_path, monkeypatch, capsys):
    from support import copy_project
    from tandem.cli import main

    root = copy_project(tmp_path / "project")
    shutil.copy2(REPO / "requirements-dev.txt", root / "requirements-dev.txt")
    before = {name: (root / name).read_bytes() for name in ("requirements-modal.txt", "requirements-dev.txt")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAIL", "yes")

    assert main(["lock", "--project", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tandem lock: error: uv pip compile could not make requirements-dev.txt, so no lock was written: No solution "
        "found when resolving dependencies: Because you require tqdm<4 and tqdm==4.70.1, we can conclude that your "
        "requirements are unsatisfiable."
    ]
    assert {name: (root / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [".dockerignore", "compose.cpu.yaml", "compose.multinode.yaml", "compose.nodes.yaml", "compose.yaml",
         "docker", "modal_app", "pyproject.toml", "requirements-dev.txt", "requirements-modal.txt", "src"]
    )  # fmt: skip

    # Both compile: both are replaced.
    monkeypatch.setenv("FAIL", "no")
    assert main(["lock", "--project", str(root)]) == 0
    for name in before:
        assert (root / name).read_text() == "tqdm==4.70.1 \\\n    --hash=sha256:" + "c" * 64 + "\n"
