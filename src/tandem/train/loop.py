"""The training loop both trainers run: a step, then the bookkeeping after it (the loss window and its log
line, evaluation, checkpoints, sample grids, stopping), in that order, every step.

    step -> log (every --log-every, and before anything is saved) -> evaluate -> checkpoint -> sample -> stop?

A trainer hands in its step (batch -> loss -> update, see ClassifierStep / DiTStep) and what it does
between steps; the loop owns the cadence.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tandem.train.session import Session


class StopSignal:
    """SIGTERM (what Docker and Modal send first) and Ctrl-C set a flag the loop checks after each step,
    so the run ends with a checkpoint instead of dying mid-step. A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class LossWindow:
    """Losses and gradient norms since the last log, kept on the device: reading them waits for the GPU,
    so that happens once per log interval rather than every step."""

    def __init__(self):
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.steps.append(step)
        self.values.append(torch.stack([loss.detach().float(), grad_norm.detach().float()]))

    def read(self) -> tuple[float, float, int | None]:
        """(mean loss, mean grad norm, first step whose loss or gradient was not finite) and reset."""
        if not self.values:
            return float("nan"), float("nan"), None
        values = torch.stack(self.values).cpu()
        finite = torch.isfinite(values).all(dim=1)
        bad = None if finite.all() else self.steps[int((~finite).nonzero()[0])]
        loss, grad_norm = values.mean(dim=0).tolist()
        self.steps, self.values = [], []
        return loss, grad_norm, bad


def train_loop(
    s: Session,
    train_step: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    total_steps: int,
    *,
    training_state: Callable[[], dict],
    lr: Callable[[], float],
    evaluate_every: int = 0,
    evaluate: Callable[[int], dict] | None = None,
    sample_every: int = 0,
    sample: Callable[[int], object] | None = None,
) -> tuple[int, dict]:
    """Run train_step(step) from the session's start step up to total_steps, or until a stop request
    (SIGTERM, Ctrl-C, --stop-after). Returns the last step and the last evaluation's metrics.

    evaluate(step) every `evaluate_every` steps: its metrics are logged before the checkpoint of that step,
    so a resumed run has them. sample(step) every `sample_every` steps, after the checkpoint, except at the
    end (the trainer draws the final one). Both are left out of img/s."""
    c = s.config
    step, window, metrics = s.start_step, LossWindow(), {}
    s.loop_started()
    with StopSignal() as stop, s.progress(total_steps) as bar:
        while step < total_steps:
            started = time.perf_counter()
            loss, grad_norm = train_step(step)
            step += 1
            if c.compile and step == s.start_step + 1:
                loss.item()  # waits for the compiled first step: its time is the compiler's
                s.first_step_compiled(step, time.perf_counter() - started)
            bar.update()

            window.add(step, loss, grad_norm)
            stopping = s.should_stop(step, stop)
            evaluation_due = bool(evaluate_every) and step % evaluate_every == 0
            checkpoint_due = stopping or step == total_steps or (c.checkpoint_every and step % c.checkpoint_every == 0)
            if step % c.log_every == 0 or evaluation_due or checkpoint_due:
                # raises TrainingDiverged on a NaN/inf loss, before anything else is saved
                s.log_window(step, window, bar, lr=lr())
            if evaluation_due:
                with s.untimed("evaluate"):
                    metrics = evaluate(step)
                s.log({"step": step, **metrics})
            if checkpoint_due:
                s.save_checkpoint(step, training_state())
            if sample_every and step % sample_every == 0 and step < total_steps:
                with s.untimed("sample"):
                    sample(step)
            if stopping:
                break
    s.loop_ended()
    return step, metrics
