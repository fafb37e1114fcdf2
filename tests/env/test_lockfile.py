import pytest

from support import REPO
from tandem.env.lockfile import read_lock
from tandem.errors import UsageError

REQUIRED = {"torch": "2.14.1", "torchvision": "0.29.1"}


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
    lock.write_text("tqdm==4.66.0 \\\n    --hash=sha256:aa\ntorch>=2.0 \\\n    --hash=sha256:bb\n")
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
    lock.write_text(
        "triton==3.8.0 ; sys_platform == 'linux' \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via torch\n"
    )
    (pin,) = read_lock(lock)
    assert (pin.name, pin.version, pin.marker, pin.hashes) == (
        "triton",
        "3.8.0",
        "sys_platform == 'linux'",
        ("sha256:aa", "sha256:bb"),
    )
