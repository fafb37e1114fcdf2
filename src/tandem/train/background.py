"""Work a run does off its training thread, one job at a time: checkpoint writes, mid-run sample grids.

A job runs on its own thread while training goes on; the next job (or `wait`) first waits for it and
raises its failure in the training thread, so nothing fails unseen. The threads are not daemons: a job in
flight finishes before the interpreter exits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Background:
    def __init__(self, name: str):
        self.name = name
        self._thread: threading.Thread | None = None
        self._result: object = None
        self._failure: BaseException | None = None

    def start(self, job: Callable[[], object]) -> None:
        """Run `job` on a thread, once the job before it has finished (its failure is raised here)."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name=self.name)
        self._thread.start()

    def wait(self) -> object:
        """Block until the job in flight, if any, has finished; its result (None when there was none), or
        its exception raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        result, self._result = self._result, None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        return result

    def _run(self, job: Callable[[], object]) -> None:
        try:
            self._result = job()
        except Exception as exc:  # raised in the training thread by the next start() or wait()
            self._failure = exc
