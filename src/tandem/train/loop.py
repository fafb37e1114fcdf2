"""The training loop both trainers run: a step, then the bookkeeping after it (the loss window and its log
line, evaluation, checkpoints, sample grids, stopping), in that order, every step.

    step -> log (every --log-every and at the end; a NaN/inf check before anything is saved)
         -> evaluate -> checkpoint -> sample -> stop?

A trainer hands in its step (batch -> loss -> update, see ClassifierStep / DiTStep) and what it does
between steps; the loop owns the cadence and its reporting: the progress bar, the stop vote, the loss
window and where the time went. What it writes goes through the session's RunWriter.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

import torch
from tqdm import tqdm

from tandem.train import distributed
from tandem.train.session import Session

# What a run spends time on between its steps (each is also logged in its final record as <part>_s).
SPENT = ("checkpoint", "sample", "evaluate", "compile")
WINDOW = "loss_window"  # a checkpoint's record of the loss window it cut


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
    so that happens once per log interval rather than every step. A window a checkpoint cuts (a stop, a
    checkpoint between logs) is saved with it and carried on by the resumed run, so that each logged point
    averages a whole interval, across a resume too."""

    def __init__(self, carried: dict | None = None):
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []
        self.carried = {"steps": 0, "loss_sum": 0.0, "grad_norm_sum": 0.0, **(carried or {})}

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.steps.append(step)
        self.values.append(torch.stack([loss.detach().float(), grad_norm.detach().float()]))

    def first_bad(self) -> int | None:
        """The first step whose loss or gradient was not finite, or None; the window goes on."""
        if not self.values:
            return None
        finite = torch.isfinite(torch.stack(self.values).cpu()).all(dim=1)
        return None if finite.all() else self.steps[int((~finite).nonzero()[0])]

    def sums(self) -> tuple[int, float, float]:
        """(steps, loss sum, grad norm sum) of the window so far, what was carried in included."""
        sums = torch.stack(self.values).sum(dim=0).cpu().tolist() if self.values else [0.0, 0.0]
        c = self.carried
        return len(self.values) + c["steps"], sums[0] + c["loss_sum"], sums[1] + c["grad_norm_sum"]

    def read(self) -> tuple[float, float, int | None]:
        """(mean loss, mean grad norm, first step whose loss or gradient was not finite) and reset."""
        bad = self.first_bad()
        n, loss_sum, grad_sum = self.sums()
        self.steps, self.values = [], []
        self.carried = {"steps": 0, "loss_sum": 0.0, "grad_norm_sum": 0.0}
        if not n:
            return float("nan"), float("nan"), None
        return loss_sum / n, grad_sum / n, bad


class Clock:
    """Where an attempt's time goes: its steps, and the work between them (SPENT) that img/s leaves out."""

    def __init__(self, start_step: int):
        self.start_step = start_step
        self.spent = dict.fromkeys(SPENT, 0.0)
        self.started = time.perf_counter()
        self.seconds = 0.0  # the whole loop, once it has ended
        self._last_log = (self.started, start_step)
        self._untimed = 0.0  # seconds spent between steps since the last log

    @contextlib.contextmanager
    def untimed(self, part: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spend(part, time.perf_counter() - start)

    def spend(self, part: str, seconds: float) -> None:
        self._untimed += seconds
        self.spent[part] += seconds

    def img_per_s(self, step: int, batch_size: int) -> float:
        """Training images per second since the last log, time between steps left out; starts a new window."""
        now, (then, then_step) = time.perf_counter(), self._last_log
        rate = (step - then_step) * batch_size / max(now - then - self._untimed, 1e-9)
        self._last_log, self._untimed = (now, step), 0.0
        return rate

    def eta(self, step: int, total_steps: int) -> float:
        """Seconds left to `total_steps` at this attempt's pace so far, the work between steps included
        (compiling, a one-off, left out)."""
        done = step - self.start_step
        spent = time.perf_counter() - self.started - self.spent["compile"]
        return spent / done * (total_steps - step) if done > 0 else float("nan")

    def end(self) -> None:
        self.seconds = time.perf_counter() - self.started

    def timing(self, step: int, batch_size: int) -> dict:
        """This attempt's loop time, each part of SPENT, and img/s of the steps alone and end to end."""
        images = (step - self.start_step) * batch_size
        return {
            "loop_s": self.seconds,
            **{f"{part}_s": spent for part, spent in self.spent.items()},
            "step_img_per_s": images / max(self.seconds - sum(self.spent.values()), 1e-9),
            "end_to_end_img_per_s": images / max(self.seconds, 1e-9),
        }


class Grids(Protocol):
    """Sample grids drawn during training (tandem.train.samples.GridsInBackground)."""

    def start(self, step: int) -> None: ...  # a grid of this step's weights, drawn while training goes on

    def finish(self) -> None: ...  # the grid in progress, if any, is on disk


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
    grids: Grids | None = None,
) -> tuple[int, dict, dict]:
    """Run train_step(step) from the run's start step up to total_steps, or until a stop request (SIGTERM,
    Ctrl-C, --stop-after). Returns the last step, the last evaluation's metrics and the attempt's timing.

    evaluate(step) every `evaluate_every` steps: its metrics are logged before the checkpoint of that step,
    so a resumed run has them. grids.start(step) every `sample_every` steps, after the checkpoint, except
    at the end (the trainer draws the final one); the grid is drawn while training goes on, and finished
    before the next checkpoint, so a checkpoint's step implies every grid before it is on disk. Both are
    left out of img/s (a grid counts only what the training thread spends on it)."""
    c, run = s.config, s.run
    window = LossWindow((run.state or {}).get(WINDOW))  # the window the checkpoint resumed from cut, if any
    step, metrics, clock = run.start_step, {}, Clock(run.start_step)
    with StopSignal() as stop, progress_bar(s, total_steps) as bar:
        while step < total_steps:
            started = time.perf_counter()
            loss, grad_norm = train_step(step)
            step += 1
            if c.compile and step == run.start_step + 1:
                loss.item()  # waits for the compiled first step: its time is the compiler's
                compiled(s, clock, step, time.perf_counter() - started)
            bar.update()

            window.add(step, loss, grad_norm)
            stopping = should_stop(s, step, stop)
            evaluation_due = bool(evaluate_every) and step % evaluate_every == 0
            checkpoint_due = stopping or step == total_steps or (c.checkpoint_every and step % c.checkpoint_every == 0)
            # Each ends the run (TrainingDiverged) on a NaN/inf loss, before anything else is saved.
            if step % c.log_every == 0 or step == total_steps:
                log_window(s, clock, step, total_steps, window, bar, lr=lr())
            elif evaluation_due or checkpoint_due:
                check_window(s, window)
            if evaluation_due:
                with clock.untimed("evaluate"):
                    metrics = evaluate(step)
                run.log({"step": step, **metrics})
            if checkpoint_due:
                if grids is not None:
                    with clock.untimed("sample"):
                        grids.finish()
                with clock.untimed("checkpoint"):
                    run.save(step, {**training_state(), WINDOW: carried(s, window)}, s.generators)
            if sample_every and step % sample_every == 0 and step < total_steps:
                with clock.untimed("sample"):
                    grids.start(step)
            if stopping:
                break
        if grids is not None:
            with clock.untimed("sample"):
                grids.finish()
        with clock.untimed("checkpoint"):  # the end-to-end time ends with the last checkpoint on disk
            run.wait()
        clock.end()
    return step, metrics, clock.timing(step, c.batch_size)


def progress_bar(s: Session, total_steps: int) -> tqdm:
    """A progress bar in optimizer steps (img/s in its postfix), on rank 0 at a terminal only."""
    return tqdm(
        total=total_steps,
        initial=s.run.start_step,
        unit="step",
        desc=s.kind,
        dynamic_ncols=True,
        disable=not (s.is_main and sys.stderr.isatty()),
    )


def should_stop(s: Session, step: int, stop: StopSignal) -> bool:
    """SIGTERM / Ctrl-C, or --stop-after reached; all ranks agree. Several ranks compare their signals at
    log intervals only (each comparison waits for the device), so a stop lands within --log-every."""
    c = s.config
    by_limit = bool(c.stop_after) and step - s.run.start_step >= c.stop_after
    if s.layout.world_size > 1 and step % c.log_every and not by_limit:
        return False
    requested = distributed.any_rank(stop.received is not None, s.device)
    if requested:
        s.print(f"{stop.received or 'stop signal'} received: checkpointing at step {step} and stopping")
    return requested or by_limit


def check_window(s: Session, window: LossWindow) -> None:
    """End the run (TrainingDiverged) when any rank's window holds a NaN/inf loss or gradient."""
    bad = window.first_bad()
    first_bad = distributed.min_all(float("inf") if bad is None else bad, s.device)
    if first_bad != float("inf"):
        s.run.diverged(int(first_bad))


def carried(s: Session, window: LossWindow) -> dict:
    """The window so far, as the checkpoint carries it: its losses averaged over the ranks."""
    n, loss_sum, grad_sum = window.sums()
    loss_sum, grad_sum = (v / s.layout.world_size for v in distributed.sum_all([loss_sum, grad_sum], s.device))
    return {"steps": n, "loss_sum": loss_sum, "grad_norm_sum": grad_sum}


def log_window(s: Session, clock: Clock, step: int, total_steps: int, window: LossWindow, bar: tqdm, **extra) -> dict:
    """Read the window's losses; end the run on NaN/inf before anything is saved; log the rest, and show it
    as one line (above the progress bar at a terminal, so that each stays in the scrollback)."""
    check_window(s, window)
    loss, grad_norm, _ = window.read()
    loss = distributed.sum_all([loss], s.device)[0] / s.layout.world_size
    record = {
        "step": step,
        "loss": loss,
        "grad_norm": grad_norm,
        **extra,
        "img_per_s": clock.img_per_s(step, s.config.batch_size),
        "elapsed_s": s.run.elapsed(),
    }
    s.run.log(record)
    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['img_per_s']:,.0f}", refresh=False)
    s.print(progress_line(record, total_steps, clock.eta(step, total_steps)))
    return record


def progress_line(record: dict, total_steps: int, eta: float) -> str:
    """step 120/600 (20%)  loss 0.5821  lr 1.89e-03  grad 0.412  1,290 img/s  elapsed 1m02s  ETA 4m08s"""
    step, width = record["step"], len(str(total_steps))
    return (
        f"step {step:>{width}}/{total_steps} ({step / max(total_steps, 1):4.0%})  loss {record['loss']:.4f}  "
        f"lr {record.get('lr', 0):.2e}  grad {record['grad_norm']:.3g}  {record['img_per_s']:,.0f} img/s  "
        f"elapsed {duration(record['elapsed_s'])}  ETA {duration(eta)}"
    )


def duration(seconds: float) -> str:
    """45s, 4m08s, 2h03m: a length of time as people read it ("?" until there is one)."""
    if not math.isfinite(seconds):  # nothing measured yet
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def compiled(s: Session, clock: Clock, step: int, seconds: float) -> None:
    """The first step under torch.compile, which waited for the compiler: logged, and left out of img/s."""
    clock.spend("compile", seconds)
    s.run.log({"step": step, "compile_s": seconds})
    s.print(f"torch.compile: the first step took {seconds:.1f}s (compiling)")
