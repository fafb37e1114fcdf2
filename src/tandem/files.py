"""Atomic file writes: a reader sees the old file or the new one, never half of one. Every whole file
tandem writes goes through atomic_write (a run's metrics log is appended to, its lock file is locked).

The new content goes to a temporary file next to the target (`.<name>.<pid>.tmp`), is flushed and fsynced,
and is renamed over the target with os.replace (or hard-linked to it, when it must not replace a file);
then the directory is fsynced. The file gets the mode a plain write would give: the target's own mode
when it exists, else the default (0666 less the umask). No temporary outlives its write: an exception,
Ctrl-C or SIGTERM removes it on the way out, and a process killed outright (SIGKILL) leaves one that the
next write of that file removes.

A write that cannot happen raises WriteError, one line naming the path and why (a read-only file system,
a directory in the way, a missing folder, no space); it is a UsageError, so the CLI prints that line and
exits 2, and an OSError, so code that handles disk errors still catches it. Parent folders are made only
when the caller asks (parents=True).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from tandem.errors import UsageError


class WriteError(UsageError, OSError):
    """`path` could not be written; errno, strerror and filename are the OSError's."""

    def __init__(self, path: Path, code: int | None, strerror: str | None, reason: str):
        OSError.__init__(self, code, strerror or reason, str(path))
        self.message = f"cannot write {path}: {reason}"

    def __str__(self) -> str:
        return self.message


def atomic_write(path: str | Path, write: Callable, *, replace: bool = True, parents: bool = False) -> None:
    """Call write(binary file) on a temporary file next to `path`, then swap it into place.

    replace=False: never over an existing file (FileExistsError; a hard link does not replace, so a file
    another process wrote meanwhile is kept). parents=True: make the missing folders above `path` first.
    """
    path = Path(path)
    check_writable(path, parents=parents)
    if parents:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(path, exc) from None
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    created = False
    with _sigterm_raises():
        try:
            with open(tmp, "wb") as f:
                created = True
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if replace:
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # keep the target's mode
                os.replace(tmp, path)
                created = False
            else:
                _link_new(tmp, path)
            fsync_directory(path.parent)
        except FileExistsError:
            raise
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            if created:  # a failed write's, or the one a hard link left behind
                with contextlib.suppress(OSError):  # e.g. EROFS: the real error is the one raised
                    tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str, *, parents: bool = False) -> None:
    atomic_write(path, lambda f: f.write(text.encode()), parents=parents)


def check_writable(path: str | Path, *, parents: bool = False) -> None:
    """Raise WriteError when `path` cannot be written as a file: a command calls it before long work, so a
    bad output path is named before the work, not after it. parents=True: missing folders may be made."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(path, errno.EISDIR, None, "it is a directory; name a file inside it")
    if path.exists() and not path.is_file():  # a device or a pipe: os.replace would put a file in its place
        raise WriteError(path, errno.EINVAL, None, "it is not a regular file; name a file")
    folder = path.absolute().parent
    if parents:
        folder = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    elif not folder.exists():
        above = next(p for p in folder.parents if p.exists())
        if above.is_dir():
            raise WriteError(path, errno.ENOENT, None, f"there is no folder {folder}; create it first")
        folder = above
    if not folder.is_dir():
        raise WriteError(path, errno.ENOTDIR, None, f"{folder} is not a folder")
    if not os.access(folder, os.W_OK):
        code = errno.EROFS if _read_only(folder) else errno.EACCES
        raise WriteError(path, code, os.strerror(code), _reason(folder, code, os.strerror(code)))


def _write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(
        path, exc.errno, exc.strerror, _reason(path.absolute().parent, exc.errno, exc.strerror or str(exc))
    )


def _reason(folder: Path, code: int | None, strerror: str) -> str:
    return {
        errno.EROFS: f"{folder} is on a read-only file system",
        errno.EACCES: f"no permission to write in {folder}",
        errno.EPERM: f"no permission to write in {folder}",
        errno.ENOSPC: f"no space left on the device of {folder}",
        errno.EDQUOT: f"the disk quota of {folder} is used up",
        errno.EISDIR: "it is a directory; name a file inside it",
        errno.ENOENT: f"there is no folder {folder}; create it first",
    }.get(code, strerror)


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then swap in
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by writers that no longer run (killed mid-write)."""
    prefix, suffix = f".{path.name}.", ".tmp"
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) : -len(suffix)]
        if name.startswith(prefix) and name.endswith(suffix) and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                (path.parent / name).unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: a leftover of an earlier write
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def _sigterm_raises():
    """While writing: SIGTERM with no handler of its own ends the process through SystemExit, so the
    temporary is removed first (the trainers install their own handler and are left alone)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
