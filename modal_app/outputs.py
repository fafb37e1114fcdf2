"""Copy what a run produced for people to look at (config, metrics, loss curve, sample grids, TensorBoard
events; not the checkpoints) into a local folder: from the runs Volume after a Modal run, from the runs dir
after a local one."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tandem.files import atomic_write
from tandem.runs import Entry, RunsFolder

WANTED_FILES = ("config.json", "metrics.jsonl", "loss_curve.png")
EVENTS = "events.out.tfevents."  # TensorBoard's, in the run directory: `tensorboard --logdir outputs` reads them
WANTED_DIRS = ("samples", "tensorboard")  # tensorboard/: where older runs kept their events
THE_FILE = "."  # how a reader lists a path that is a file: the file itself


def wanted(relative: str) -> bool:
    """Whether a path inside a run directory is one we copy."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):  # temporaries of atomic writes
        return False
    if len(parts) == 1:
        return parts[0] in WANTED_FILES or parts[0].startswith(EVENTS)
    return parts[0] in WANTED_DIRS


class DirFiles(RunsFolder):
    """A local runs directory."""

    def files(self, run: str) -> list[str]:
        """The files under a run (or any folder of the runs dir), relative to it; a file lists itself as "."."""
        base = self.root / run
        if base.is_file():
            return [THE_FILE]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


class VolumeFiles:
    """The runs Volume, read through the modal client (paths inside a Volume start at its root); also the
    store tandem.runs lists and resolves runs in."""

    def __init__(self, volume, name: str = "the runs Volume"):
        self.volume, self.name = volume, name

    def describe(self) -> str:
        return f"Volume {self.name}"

    def _listdir(self, path: str, recursive: bool) -> list:
        from modal.exception import NotFoundError

        try:
            return self.volume.listdir(path, recursive=recursive)
        except (NotFoundError, FileNotFoundError):  # no such path
            return []

    def names(self) -> list[str]:
        """The folders at the Volume's root."""
        from modal.volume import FileEntryType

        found = [e for e in self._listdir("/", recursive=False) if e.type == FileEntryType.DIRECTORY]
        return sorted(name for e in found if not (name := PurePosixPath(e.path).name).startswith("."))

    def entries(self, run: str) -> list[Entry]:
        """The files under a run (or any path), relative to it; a file path lists itself as "."."""
        from modal.volume import FileEntryType

        files = [e for e in self._listdir(run, recursive=True) if e.type == FileEntryType.FILE]
        return [Entry(PurePosixPath(e.path).relative_to(run).as_posix(), e.size, e.mtime) for e in files]

    def files(self, run: str) -> list[str]:
        """As DirFiles.files (the Volume lists a file path as that one file)."""
        return sorted(e.path for e in self.entries(run))

    def read(self, run: str, relative: str) -> bytes | None:
        from modal.exception import NotFoundError

        try:
            return b"".join(self.volume.read_file(f"{run}/{relative}"))
        except (NotFoundError, FileNotFoundError):
            return None

    def running(self, run: str) -> bool | None:
        return None  # a lock lives in one container's view; the Volume cannot tell


def copy_outputs(source, run: str, outputs: str | Path) -> list[Path]:
    """Copy the run's wanted files into <outputs>/<run>/; returns the files written (none: no such run)."""
    dest = Path(outputs) / run
    written = []
    for relative in filter(wanted, source.files(run)):
        path = dest / relative
        data = source.read(run, relative)
        atomic_write(path, lambda f, data=data: f.write(data), parents=True)
        written.append(path)
    return written
