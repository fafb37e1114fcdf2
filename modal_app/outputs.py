"""Copy what a run produced for people to look at (config, metrics, loss curve, sample grids, TensorBoard
events; not the checkpoints) into a local folder: from the runs Volume after a Modal run, from the runs dir
after a local one."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tandem.files import atomic_write

WANTED_FILES = ("config.json", "metrics.jsonl", "loss_curve.png")
WANTED_DIRS = ("samples", "tensorboard")  # `tensorboard --logdir outputs` reads the events here
THE_FILE = "."  # how a reader lists a path that is a file: the file itself


def wanted(relative: str) -> bool:
    """Whether a path inside a run directory is one we copy."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part.startswith(".") for part in parts):  # temporaries of atomic writes
        return False
    return (len(parts) == 1 and parts[0] in WANTED_FILES) or (len(parts) > 1 and parts[0] in WANTED_DIRS)


class DirFiles:
    """A local runs directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def files(self, run: str) -> list[str]:
        """The files under a run (or any folder of the runs dir), relative to it; a file lists itself as "."."""
        base = self.root / run
        if base.is_file():
            return [THE_FILE]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def read(self, run: str, relative: str) -> bytes:
        return (self.root / run / relative).read_bytes()


class VolumeFiles:
    """The runs Volume, read through the modal client (paths inside a Volume start at its root)."""

    def __init__(self, volume):
        self.volume = volume

    def files(self, run: str) -> list[str]:
        """As DirFiles.files (the Volume lists a file path as that one file)."""
        from modal.exception import NotFoundError
        from modal.volume import FileEntryType

        try:
            entries = self.volume.listdir(run, recursive=True)
        except (NotFoundError, FileNotFoundError):  # no such path: nothing to copy
            return []
        paths = [e.path for e in entries if e.type == FileEntryType.FILE]
        return sorted(PurePosixPath(p).relative_to(run).as_posix() for p in paths)

    def read(self, run: str, relative: str) -> bytes:
        return b"".join(self.volume.read_file(f"{run}/{relative}"))


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
