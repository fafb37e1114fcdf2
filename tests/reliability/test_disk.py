"""A full or read-only runs directory stops the run with a message and keeps the earlier checkpoints."""

import os
import resource
import signal
import subprocess
import sys

import pytest

from tandem.train import checkpoint

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

FLAGS = [
    "train", "dit", "--patch-size", "4", "--batch-size", "32", "--steps", "9", "--warmup-steps", "2",
    "--log-every", "1", "--checkpoint-every", "3", "--sample-every", "0", "--samples-per-class", "1",
    "--sample-steps", "2", "--solver", "euler", "--device", "cpu", "--deterministic", "--run-name", "run",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(runs, *extra, preexec=None):
    return subprocess.run(
        [sys.executable, "-m", "tandem", *FLAGS, "--runs-dir", str(runs), *extra],
        capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=preexec,
    )  # fmt: skip


@pytest.fixture
def first_checkpoint(tmp_path):
    done = run(tmp_path, "--stop-after", "3")
    assert done.returncode == 0, done.stderr
    (found,) = checkpoint.CheckpointDir(tmp_path / "run" / "checkpoints").existing()
    return found[1], found[1].read_bytes()


def test_full_disk_fails_with_a_message_and_keeps_the_checkpoint(tmp_path, first_checkpoint):
    path, before = first_checkpoint

    def small_disk():  # writes past 1 MB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = run(tmp_path, "--resume", preexec=small_disk)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "checkpoint" in last and "Traceback" not in done.stderr, done.stderr
    assert path.read_bytes() == before
    assert [p for _, p in checkpoint.CheckpointDir(path.parent).existing()] == [path]
    assert not list(path.parent.glob(".*.tmp"))


@pytest.fixture
def read_only(tmp_path):
    """Remount a directory read-only in place (root only), as a full or locked-down volume would be."""
    mounted = []

    def make(path):
        for cmd in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,ro,bind", str(path)]):
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                pytest.skip("cannot bind-mount here (needs root)")
            mounted.append(path)

    yield make
    for path in dict.fromkeys(reversed(mounted)):
        subprocess.run(["umount", str(path)], capture_output=True)


def test_read_only_runs_directory_fails_with_a_message(tmp_path, first_checkpoint, read_only):
    path, before = first_checkpoint
    read_only(tmp_path / "run")
    done = run(tmp_path, "--resume")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "Read-only file system" in last and "--resume" in last
    assert path.read_bytes() == before
