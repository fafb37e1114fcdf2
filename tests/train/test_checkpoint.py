import os
import random
import threading
import time

import numpy as np
import pytest
import torch

from tandem.errors import UsageError
from tandem.train import checkpoint
from tandem.train.checkpoint import CheckpointDir, CheckpointError, CheckpointWriteError


def state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((64, 64), float(step))}, "note": [1, (2, "x")]}


def test_save_load_round_trip(tmp_path, states_equal):
    path = tmp_path / "c.pt"
    checkpoint.save(state(3), path)
    states_equal(checkpoint.load(path), state(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    checkpoint.save(state(1), path)
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(state(2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_writes_are_fsynced_and_renamed(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    checkpoint.save(state(1), tmp_path / "c.pt")
    assert calls == ["fsync", "replace", "fsync"]  # the file, the rename, then the directory


def test_keeps_the_last_k(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=2)
    for step in (5, 10, 15, 20):
        ckpts.save(state(step), step)
    assert [step for step, _ in ckpts.existing()] == [15, 20]


@pytest.mark.parametrize("damage", ["truncate", "garble", "empty"])
def test_latest_valid_skips_a_damaged_checkpoint_and_names_it(tmp_path, damage):
    ckpts = CheckpointDir(tmp_path, keep=5)
    ckpts.save(state(1), 1)
    newest = ckpts.save(state(2), 2)
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garble":
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    else:
        data = bytearray()
    newest.write_bytes(bytes(data))

    reports = []
    path, loaded = ckpts.latest_valid(report=reports.append)
    assert path == ckpts.path(1) and loaded["step"] == 1
    assert len(reports) == 1 and newest.name in reports[0]
    with pytest.raises(CheckpointError):
        checkpoint.load(newest)


def test_temporaries_of_a_killed_write_are_ignored_then_removed(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep=5)
    ckpts.save(state(1), 1)
    (tmp_path / ".step_0000002.pt.999.tmp").write_bytes(b"half")
    assert [step for step, _ in ckpts.existing()] == [1]
    ckpts.remove_temporaries()
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001.pt"]


def test_no_checkpoint_at_all(tmp_path):
    assert CheckpointDir(tmp_path / "missing").latest_valid() is None
    with pytest.raises(UsageError, match="--checkpoint .*missing.pt"):
        checkpoint.load_or_fail(tmp_path / "missing.pt", "--checkpoint")


def test_a_foreign_file_is_not_a_checkpoint(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a tandem checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_rng_capture_and_restore_replays_every_stream():
    gens = {"noise": torch.Generator().manual_seed(1), "data": torch.Generator().manual_seed(2)}
    saved = checkpoint.capture_rng(gens)

    def draw():
        return (
            random.random(),
            float(np.random.rand()),
            torch.rand(3).tolist(),
            torch.rand(2, generator=gens["noise"]).tolist(),
            torch.rand(2, generator=gens["data"]).tolist(),
        )

    first = draw()
    checkpoint.restore_rng(saved, gens)
    assert draw() == first


def test_rng_state_survives_a_checkpoint_file(tmp_path):
    gens = {"noise": torch.Generator().manual_seed(1)}
    checkpoint.save({"rng": checkpoint.capture_rng(gens)}, tmp_path / "c.pt")
    expected = (random.random(), float(np.random.rand()), torch.rand(2, generator=gens["noise"]).tolist())
    checkpoint.restore_rng(checkpoint.load(tmp_path / "c.pt")["rng"], gens)
    assert (random.random(), float(np.random.rand()), torch.rand(2, generator=gens["noise"]).tolist()) == expected


def test_identity_mismatch_names_the_file_and_the_field(tmp_path):
    saved = {"dataset": "digits", "patch_size": 2, "size": "tiny"}
    checkpoint.check_identity(tmp_path / "c.pt", saved, dict(saved), {})
    with pytest.raises(UsageError) as err:
        checkpoint.check_identity(tmp_path / "c.pt", saved, {**saved, "patch_size": 4}, {})
    message = str(err.value)
    assert "c.pt" in message and "patch_size=2" in message and "--patch-size" in message
    assert "\n" not in message
    with pytest.raises(UsageError, match="--dataset"):
        checkpoint.check_identity(
            tmp_path / "c.pt", {"num_classes": 10}, {"num_classes": 3}, {"num_classes": "--dataset"}
        )


def test_a_background_save_writes_what_the_state_was_when_saved(tmp_path, states_equal, monkeypatch):
    ckpts = CheckpointDir(tmp_path, keep=2)
    gate = threading.Event()
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (gate.wait(10), real_save(obj, f)))
    live = state(1)
    path = ckpts.save(live, 1, background=True)
    assert path == ckpts.path(1) and not path.exists()  # returned before the write
    live["model"]["w"].add_(100)  # training goes on, in place
    live["note"][1] = "changed"
    gate.set()
    ckpts.wait()
    states_equal(checkpoint.load(path), state(1))


def test_background_saves_one_at_a_time_and_keep_the_last_k(tmp_path, monkeypatch):
    ckpts = CheckpointDir(tmp_path, keep=2)
    in_flight, most = [], []
    real_save = torch.save

    def tracked(obj, f):
        in_flight.append(1)
        most.append(len(in_flight))
        time.sleep(0.05)
        real_save(obj, f)
        in_flight.pop()

    monkeypatch.setattr(torch, "save", tracked)
    for step in (5, 10, 15, 20):
        ckpts.save(state(step), step, background=True)
    ckpts.wait()
    assert most == [1, 1, 1, 1]
    assert [step for step, _ in ckpts.existing()] == [15, 20]


def test_a_failed_background_write_is_raised_by_the_next_save(tmp_path, monkeypatch):
    ckpts = CheckpointDir(tmp_path, keep=5)
    ckpts.save(state(1), 1)
    before = ckpts.path(1).read_bytes()
    real_save = torch.save

    def full_at_step_2(obj, f):
        if ".step_0000002.pt." not in f.name:
            return real_save(obj, f)
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_at_step_2)
    ckpts.save(state(2), 2, background=True)  # returns: the failure is not known yet
    with pytest.raises(CheckpointWriteError) as err:
        ckpts.save(state(3), 3, background=True)
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message and "latest: step_0000001.pt" in message
    assert ckpts.path(1).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000001.pt"]  # no torn file, no temporary
    ckpts.wait()  # reported once


def test_wait_raises_a_failed_final_write(tmp_path, monkeypatch):
    ckpts = CheckpointDir(tmp_path / "missing" / "deeper", keep=5)
    monkeypatch.setattr(torch, "save", lambda obj, f: (_ for _ in ()).throw(OSError(30, "Read-only file system")))
    ckpts.save(state(1), 1, background=True)
    with pytest.raises(CheckpointWriteError, match="Read-only file system.*latest: none"):
        ckpts.wait()


def test_setting_aside_never_replaces_what_was_set_aside_before(tmp_path):
    for content in (b"first", b"second", b"third"):
        (tmp_path / "step_0000002.pt").write_bytes(content)
        checkpoint.set_aside(tmp_path / "step_0000002.pt")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "step_0000002.pt.unusable": b"first",
        "step_0000002.pt.unusable-2": b"second",
        "step_0000002.pt.unusable-3": b"third",
    }
