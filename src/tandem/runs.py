"""The runs of a runs directory (or of the runs Volume on Modal): listed newest first, and named.

A run is a folder holding a config.json. Each is summed up from its files alone, without torch: its kind,
how it stands, the step it reached of its total, its key metric, when it was last written, its size.

A run is named (`--run`, `--classifier-checkpoint`, Modal's `fetch`) by
    its full name            dit-20261201-120000
    a unique prefix          dit-20261201   (several or none: one line listing the candidates, exit 2)
    latest, latest:<kind>    the run written most recently (of that kind: dit, classifier)
    a path                   runs/dit-20261201-120000 or /abs/path/to/run (this machine only)

Where the runs are is a store: RunsFolder here, and on Modal the runs Volume read through the modal client
(modal_app/outputs.py), both with names(), entries(run), read(run, relative) and running(run).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tandem.errors import UsageError
from tandem.train.checkpoint_names import BEST, step_of

KINDS = ("classifier", "dit")
LATEST = "latest"
# The number a run is judged by, best first: in the newest record that has any of them.
KEY_METRICS = ("test_acc", "sample_acc", "val_acc", "loss")
SHOWN_CANDIDATES = 8  # names listed in a one-line refusal


@dataclass(frozen=True)
class Entry:
    """A file of a run: its path inside the run, bytes and modification time (seconds since the epoch)."""

    path: str
    size: int
    mtime: float


class RunsFolder:
    """The runs directory on this machine."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def entries(self, run: str) -> list[Entry]:
        base, found = self.root / run, []
        for folder, _, files in os.walk(base):
            for name in files:
                path = Path(folder, name)
                try:
                    stat = path.stat()
                except OSError:  # gone meanwhile (a checkpoint rotated out)
                    continue
                found.append(Entry(path.relative_to(base).as_posix(), stat.st_size, stat.st_mtime))
        return found

    def read(self, run: str, relative: str) -> bytes | None:
        try:
            return (self.root / run / relative).read_bytes()
        except OSError:
            return None

    def running(self, run: str) -> bool | None:
        """Whether a process holds the run's lock (tandem.train.run.RunLock): a shared probe, let go at once."""
        try:
            fd = os.open(self.root / run / ".lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # a filesystem without locks: nothing to tell
            return None
        finally:
            os.close(fd)  # closing drops the probe's lock
        return False


@dataclass
class RunInfo:
    name: str
    kind: str | None
    status: str  # running, completed, stopped, diverged, interrupted, unfinished, new
    step: int
    total: int | None
    metric: str | None  # its KEY_METRICS name
    value: float | None
    updated: float  # the newest file's mtime
    size: int  # bytes
    checkpoint: int | None  # the newest checkpoint's step

    def as_json(self, now: float) -> dict:
        return {**asdict(self), "updated": iso_time(self.updated), "age_s": round(now - self.updated, 1)}


def _json(data: bytes | None):
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _records(data: bytes | None) -> list[dict]:
    records = []
    for line in (data or b"").decode(errors="replace").splitlines():
        record = _json(line.encode())
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def summarize(store, run: str) -> RunInfo | None:
    """What a run's files say about it; None when the folder is not a run (no config.json)."""
    record = _json(store.read(run, "config.json"))
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return None
    entries = store.entries(run)
    checkpoints = [s for e in entries if e.path.startswith("checkpoints/") and (s := step_of(e.path[12:])) is not None]
    result = _json(store.read(run, "result.json"))
    result = result if isinstance(result, dict) else {}
    records = _records(store.read(run, "metrics.jsonl"))
    step = max([0, *checkpoints, *(r["step"] for r in records)])
    if isinstance(result.get("step"), int):
        step = max(step, result["step"])
    running = store.running(run)
    if running:
        status = "running"
    elif isinstance(result.get("status"), str):
        status = result["status"]
    elif checkpoints or records:
        status = "unfinished" if running is None else "interrupted"
    else:
        status = "new"
    metric, value = None, None
    for r in reversed(records):
        found = next((k for k in KEY_METRICS if isinstance(r.get(k), int | float)), None)
        if found:
            metric, value = found, float(r[found])
            break
    total = record.get("total_steps")
    if not isinstance(total, int) and record.get("kind") == "dit":
        total = record["config"].get("steps")
    return RunInfo(
        name=run,
        kind=record.get("kind") if record.get("kind") in KINDS else None,
        status=status,
        step=step,
        total=total if isinstance(total, int) and total > 0 else None,
        metric=metric,
        value=value,
        updated=max((e.mtime for e in entries), default=0.0),
        size=sum(e.size for e in entries),
        checkpoint=max(checkpoints, default=None),
    )


def list_runs(store, kind: str | None = None) -> list[RunInfo]:
    """Every run of the store (of `kind`), the most recently written first."""
    runs = [info for name in store.names() if (info := summarize(store, name)) is not None]
    runs = [r for r in runs if kind is None or r.kind == kind]
    return sorted(runs, key=lambda r: (r.updated, r.name), reverse=True)


def resolve(ref: str, store, kind: str | None = None, flag: str = "--run") -> str:
    """The name of the run `ref` names in `store` (full name, unique prefix, latest, latest:<kind>).
    `kind`: the kind the caller needs; `latest` then means the newest run of that kind. UsageError, one
    line listing the candidates, when it names none or several."""
    ref = ref.strip().rstrip("/")
    if ref == LATEST or ref.startswith(LATEST + ":"):
        wanted = ref.partition(":")[2] or kind
        if wanted and wanted not in KINDS:
            raise UsageError(f"{flag} {ref}: no kind {wanted!r}; use latest, latest:dit or latest:classifier")
        if kind and wanted != kind:
            raise UsageError(f"{flag} {ref}: this takes a {kind} run; use latest or latest:{kind}")
        runs = list_runs(store, wanted)
        if not runs:
            some = f"{wanted} " if wanted else ""
            raise UsageError(f"{flag} {ref}: no {some}run in {store.describe()} yet; train one first")
        return runs[0].name
    names = store.names()
    if ref in names:
        return ref
    matches = [n for n in names if n.startswith(ref) and summarize(store, n) is not None]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"{flag} {ref}: {len(matches)} runs match ({shown(matches)}); pass more of the name")
    runs = [r.name for r in list_runs(store, kind)]
    some = f"{kind} runs" if kind else "runs"
    if not runs:
        raise UsageError(f"{flag} {ref}: no such run in {store.describe()}, which holds no {some} yet")
    raise UsageError(f"{flag} {ref}: no such run in {store.describe()}; its {some}, newest first: {shown(runs)}")


def resolve_path(ref: str, runs_dir: str | Path, kind: str | None = None, flag: str = "--run") -> Path:
    """A run on this machine: `ref` as a path when it is one (an existing folder, or words with a '/'),
    else resolve() in the runs directory."""
    path = Path(ref)
    if path.is_dir() or len(path.parts) > 1:
        if not path.is_dir():
            raise UsageError(f"{flag} {ref}: no such directory; pass a run directory, a run's name or latest")
        return path
    return Path(runs_dir) / resolve(ref, RunsFolder(runs_dir), kind, flag)


def checkpoint_file(store, run: str) -> str | None:
    """The checkpoint a run is used by, as a path inside it: the classifier's best by validation when it
    kept one, else the newest; None when it has none."""
    files = {e.path for e in store.entries(run)}
    if f"checkpoints/{BEST}" in files:
        return f"checkpoints/{BEST}"
    steps = [
        (step, path) for path in files if path.startswith("checkpoints/") and (step := step_of(path[12:])) is not None
    ]
    return max(steps)[1] if steps else None


def resolve_checkpoint(ref: str, runs_dir: str | Path, kind: str | None = None, flag: str = "--checkpoint") -> Path:
    """A checkpoint file on this machine: `ref` itself when it is a file, else the checkpoint of the run it
    names (a directory, a name, a prefix, latest; see checkpoint_file)."""
    if Path(ref).is_file():
        return Path(ref)
    if Path(ref).suffix == ".pt":
        raise UsageError(f"{flag} {ref}: no such file; pass a checkpoint file, or a run (its name or latest)")
    run = resolve_path(ref, runs_dir, kind, flag)
    found = checkpoint_file(RunsFolder(run.parent), run.name)
    if found is None:
        raise UsageError(f"{flag} {ref}: the run {run} has saved no checkpoint yet; pass one that has")
    return run / found


def shown(names: list[str]) -> str:
    more = len(names) - SHOWN_CANDIDATES
    return ", ".join(names[:SHOWN_CANDIDATES]) + (f" and {more} more" if more > 0 else "")


# -----------------------------------------------------------------------------
# the table `tandem runs` prints


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def age(seconds: float) -> str:
    """2m, 3h, 5d: how long ago, in its largest whole unit."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.{1 if size < 10 * scale else 0}f} {unit}"
    return f"{size} B"


def metric_text(info: RunInfo) -> str:
    if info.metric is None:
        return "-"
    shown_value = f"{info.value:.2%}" if info.metric.endswith("acc") else f"{info.value:.4g}"
    return f"{info.metric} {shown_value}"


def table(runs: list[RunInfo], now: float) -> str:
    from tandem.tables import format_table

    rows = [
        [
            r.name,
            r.kind or "?",
            r.status,
            f"{r.step}/{r.total}" if r.total else str(r.step),
            metric_text(r),
            age(now - r.updated),
            size_text(r.size),
        ]
        for r in runs
    ]
    return format_table(["run", "kind", "status", "step", "key metric", "age", "size"], rows)
