"""Checkpoints: written atomically, checksummed, the last K kept, the newest valid one found on resume.

A file is written atomically (tandem.files: a temporary in the same directory, fsynced, renamed over the
final name): a crash leaves either the old file or the new one, never half of one. torch.load notices a truncated file but not flipped bytes inside a tensor, so
each checkpoint also holds a SHA-256 of its contents, checked on load.

Training need not wait for the disk: CheckpointDir.save(..., background=True) copies the state to host
memory (pinned on CUDA) and returns; a writer thread hashes, writes and renames it. At most one write is
in flight (the next save waits for it), and a failed write is raised by the next save or wait().
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tandem.errors import UsageError
from tandem.files import atomic_write  # by name: the reliability tests intercept checkpoint writes here
from tandem.train.background import Background
from tandem.train.checkpoint_names import NAME, file_name

FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, truncated, corrupt or not a tandem checkpoint."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, read-only, permissions). Earlier ones are intact."""


# -----------------------------------------------------------------------------
# one file


def content_digest(obj) -> str:
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for key, value in obj.items():
            h.update(repr(key).encode())
            _feed(h, value)
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for value in obj:
            _feed(h, value)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def save(state: dict, path: Path) -> None:
    payload = {"format": FORMAT, "sha256": content_digest(state), "state": state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load(path: Path) -> dict:
    """The state saved at `path`, on the CPU. Raises CheckpointError saying what is wrong with it."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("no such file") from None
    except Exception as exc:  # truncated zip, garbage, pickle errors: all mean "unusable"
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"unreadable: {first_line[:120]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        raise CheckpointError("not a tandem checkpoint")
    if content_digest(payload["state"]) != payload.get("sha256"):
        raise CheckpointError("corrupt: its contents do not match their checksum")
    return payload["state"]


def load_or_fail(path: str | Path, flag: str) -> dict:
    """load() for a checkpoint a user named: any problem is a one-line UsageError."""
    try:
        return load(Path(path))
    except CheckpointError as exc:
        raise UsageError(f"{flag} {path}: {exc}; pass a checkpoint written by tandem train") from None


# -----------------------------------------------------------------------------
# a run's checkpoints/ directory


def snapshot(obj):
    """A copy of `obj` in host memory that later steps cannot change: tensors copied (into pinned memory
    from CUDA, one synchronisation for all), containers rebuilt."""
    cuda: set[torch.device] = set()
    copied = _copy(obj, cuda)
    for device in cuda:
        torch.cuda.synchronize(device)  # the non-blocking device-to-host copies have landed
    return copied


def _copy(obj, cuda: set):
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type == "cpu":
            return t.clone()
        if t.device.type != "cuda":
            return t.to("cpu", copy=True)
        cuda.add(t.device)
        return torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
    if isinstance(obj, dict):
        return {key: _copy(value, cuda) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_copy(value, cuda) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_copy(value, cuda) for value in obj)
    return obj  # numbers, strings, None: immutable


class CheckpointDir:
    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory, self.keep = Path(directory), keep
        self._writer = Background("checkpoint")

    def path(self, step: int) -> Path:
        return self.directory / file_name(step)

    def existing(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := NAME.match(p.name))]
        return sorted(found)

    def save(self, state: dict, step: int, background: bool = False) -> Path:
        """Write `state` as this step's checkpoint and drop the oldest beyond `keep`. In the background: a
        snapshot is taken now and written by a thread (after the previous write, whose failure is raised
        here), and the path is returned before the file exists."""
        self.wait()
        if not background:
            return self._write(state, step)
        copied = snapshot(state)
        self._writer.start(lambda: self._write(copied, step))
        return self.path(step)

    def wait(self) -> None:
        """Block until the write in flight (if any) is on disk; raise CheckpointWriteError if it failed."""
        self._writer.wait()

    def close(self) -> None:
        """wait(), for a process already on its way out: a failed write is reported, not raised."""
        try:
            self.wait()
        except Exception as exc:
            print(exc, file=sys.stderr)

    def _write(self, state: dict, step: int) -> Path:
        path = self.path(step)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save(state, path)
        except (OSError, RuntimeError) as exc:  # torch reports a short write as a RuntimeError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "the write was cut short"
            kept = self.existing()
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({reason}: is the disk full or read-only?); "
                f"the earlier checkpoints are intact (latest: {kept[-1][1].name if kept else 'none'}); "
                "free space or fix permissions, then rerun with --resume"
            ) from None
        for _, old in self.existing()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def remove_temporaries(self) -> None:
        """Temporary files left by a process killed mid-write (never mistaken for checkpoints)."""
        if self.directory.is_dir():
            for path in self.directory.glob(".step_*.tmp"):
                path.unlink(missing_ok=True)

    def set_aside_after(self, step: int) -> None:
        """Rename the (unusable) checkpoints newer than the one a run resumes from, out of the rotation
        but kept for a look: step_N.pt -> step_N.pt.unusable."""
        for later, path in self.existing():
            if later > step:
                set_aside(path)

    def latest_valid(self, report: Callable[[str], None] = print) -> tuple[Path, dict] | None:
        """The newest checkpoint that loads and checks out; each unusable newer one is reported by name."""
        for _, path in reversed(self.existing()):
            try:
                return path, load(path)
            except CheckpointError as exc:
                report(f"checkpoint {path} is unusable ({exc}); falling back to the previous one")
        return None


def set_aside(path: Path) -> Path:
    """Rename `path` to <name>.unusable (-2, -3 ... when that is taken): out of the run's way, never
    replacing what an earlier attempt set aside."""
    for n in itertools.count(1):
        aside = path.with_name(f"{path.name}.unusable" + (f"-{n}" if n > 1 else ""))
        if not aside.exists():
            path.rename(aside)
            return aside


# -----------------------------------------------------------------------------
# random state


def capture_rng(generators: dict[str, torch.Generator]) -> dict:
    """Every random stream of this process: python, numpy, torch CPU and CUDA, and the named generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def restore_rng(state: dict, generators: dict[str, torch.Generator]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


# -----------------------------------------------------------------------------
# model identity: a checkpoint only resumes into the model it was made from


def identity_digest(identity: dict) -> str:
    """A short hash of a model's identity (its dataset and architecture settings)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def check_identity(path: Path, saved: dict, wanted: dict, flags: dict[str, str]) -> None:
    """UsageError naming the file and the first field where the checkpoint's model differs from this one."""
    if identity_digest(saved) == identity_digest(wanted):
        return
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            flag = flags.get(key, "--" + key.replace("_", "-"))
            raise UsageError(
                f"checkpoint {path} was made with {key}={saved.get(key)!r} but this run has "
                f"{key}={wanted.get(key)!r} ({flag}); resume with the same settings, or start a new "
                "run without --resume"
            )
