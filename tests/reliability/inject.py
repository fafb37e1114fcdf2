"""Run `tandem` with a fault injected: `python inject.py POINT N -- <tandem args>`.

POINT is where the process SIGKILLs itself during the N-th checkpoint write:
  half-written   after half of the checkpoint bytes reached the temporary file
  before-rename  after the temporary file is complete and fsynced, before it replaces the target
  after-rename   after the rename, before the directory is fsynced
  stalled        never: the write hangs before its first byte (training goes on until the next save
                 waits for it), so that the test may kill the process while the write is in flight
  grid-half-written  during the N-th sample-grid write instead, once that step's checkpoint is on disk
                 (written in the background), after half of the grid's bytes reached the temporary file
  none           no fault (a plain run)
"""

import io
import os
import signal
import sys
import time

from tandem import files
from tandem.train import checkpoint, samples

point, nth = sys.argv[1], int(sys.argv[2])
argv = sys.argv[sys.argv.index("--") + 1 :]
writes = 0
grids = 0


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def half_then_die(write):
    def half(f):
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        die()

    return half


real_atomic_write = checkpoint.atomic_write


def atomic_write(path, write, **options):
    global writes
    writes += path.name.startswith("step_")  # checkpoints only, not config.json or sample grids
    if writes != nth or not path.name.startswith("step_"):
        return real_atomic_write(path, write, **options)
    if point == "half-written":
        return real_atomic_write(path, half_then_die(write), **options)
    if point == "stalled":
        return real_atomic_write(path, lambda f: time.sleep(3600), **options)
    if point == "before-rename":
        files.os.replace = lambda *a: die()
    if point == "after-rename":
        files.fsync_directory = lambda d: die()
    return real_atomic_write(path, write, **options)


checkpoint.atomic_write = atomic_write
real_grid_write = samples.atomic_write


def grid_write(path, write, **options):
    global grids
    grids += path.name.startswith("step_")  # the grids of training, not latest.png
    if point != "grid-half-written" or grids != nth or not path.name.startswith("step_"):
        return real_grid_write(path, write, **options)
    saved = path.parent.parent / "checkpoints" / path.with_suffix(".pt").name
    while not saved.exists():  # the kill lands between a checkpoint and its grid
        time.sleep(0.01)
    return real_grid_write(path, half_then_die(write), **options)


samples.atomic_write = grid_write

from tandem.cli import main  # noqa: E402  (after the patch, as the trainers resolve it at call time)

sys.exit(main(argv))
