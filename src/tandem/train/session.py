"""What a trainer holds for the life of one training process: the device and ranks, the data, the seeded
random streams, the run it writes (opened with tandem.train.attempt's decision, written through
tandem.train.run.RunDir), and what the loop reports into it (log lines, img/s, checkpoints, the result).

A trainer builds a Session (which validates every input before anything is written), builds its model,
calls open_run (the last check: it takes the run's lock, decides with tandem.train.attempt whether this
attempt starts, resumes or starts over the run, and checks the checkpoint's model), and then hands its
step to tandem.train.loop.train_loop. Every method that may talk to other ranks is called by all ranks at
the same step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tandem.data import ImageData, load_dataset
from tandem.errors import UsageError
from tandem.train import distributed, memory
from tandem.train.attempt import START, claim_attempt, recorded_changes
from tandem.train.checkpoint import capture_rng, check_identity, content_digest, identity_digest, restore_rng
from tandem.train.checkpoint import load as load_checkpoint
from tandem.train.config import TrainConfig, resolve_for_device
from tandem.train.device import choose_device, configure_determinism, derive_seed, seed_everything
from tandem.train.flags import flag_text
from tandem.train.loggers import Loggers
from tandem.train.loop import LossWindow, StopSignal
from tandem.train.run import RunDir, RunLock, RunResult, TrainingDiverged, resume_command, run_record
from tandem.train.validate import validate

# Set by a supervisor (the Modal target) to tell its attempt's result.json from an earlier one's.
ATTEMPT_VARIABLE = "TANDEM_ATTEMPT_ID"

# What a run spends time on between its steps (each is also logged in its final record as <part>_s).
SPENT = ("checkpoint", "sample", "evaluate", "compile")


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of every parameter and buffer, to compare models across processes."""
    return content_digest(model.state_dict())[:16]


class Session:
    def __init__(self, kind: str, config: TrainConfig):
        validate(config)
        self.kind, self.config = kind, config
        self.layout = distributed.from_environment()
        self.is_main = self.layout.is_main
        self.device, why = choose_device(config.device, self.layout.local_rank)
        if config.batch_size % self.layout.world_size:
            raise UsageError(
                f"--batch-size {config.batch_size} does not split evenly over {self.layout.world_size} ranks; "
                "pick a multiple of the number of processes"
            )
        self._threads = torch.get_num_threads()
        self.lock: RunLock | None = None
        self.loggers = Loggers()  # TensorBoard, W&B: opened with the run directory, on rank 0
        try:
            self._start(why)
        except BaseException:
            self.close()  # no process group or thread setting outlives a failed start
            raise
        self.run: RunDir | None = None
        self.identity: dict = {}
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.start_step = 0
        self._started = time.perf_counter()
        self._elapsed_before = 0.0
        self._last_log = (time.perf_counter(), 0)
        self._untimed = 0.0  # seconds spent checkpointing/sampling since the last log: not training
        self.spent = {part: 0.0 for part in SPENT}  # this attempt's seconds in each, between its steps
        self._loop = (0.0, 0, 0.0)  # the training loop's (start time, start step, seconds) in this attempt

    # -- setup --------------------------------------------------------------

    def _start(self, why: str) -> None:
        c = self.config
        configure_determinism(c.deterministic)
        if self.device.type == "cpu" and c.cpu_threads:
            torch.set_num_threads(c.cpu_threads)
        distributed.init(self.layout, self.device)
        ranks = f"; rank 0 of {self.layout.world_size}" if self.layout.enabled else ""
        self.print(f"device: {self.device} ({why}{ranks})")
        self.stale_image_warning()
        if c.image_size:  # before the resize that would not fit; the batch the device would choose at most
            patch = getattr(c, "patch_size", 0)
            batch = resolve_for_device(self.kind, c, self.device.type, self.layout.world_size)[0].batch_size
            needed = memory.image_size_bytes(c.image_size, batch, patch)
            memory.require_fits(needed, self.device, f"--image-size {c.image_size}", "pass a smaller --image-size")
        self.data = self.load_data()
        self.choose_for_device()

        # The global generators get the same seed on every rank, so every rank builds the same initial
        # weights (the loops build their model right after this); per-rank randomness comes from these:
        seed_everything(c.seed)
        self.generators = {  # augmentation and noise: separate streams, one per rank
            name: torch.Generator(self.device).manual_seed(derive_seed(c.seed, name, self.layout.rank))
            for name in ("data", "noise")
        }

    def print(self, *args, **kwargs) -> None:
        if self.is_main:
            tqdm.write(" ".join(map(str, args)), **kwargs)

    def stale_image_warning(self) -> None:
        from tandem.check.environment import check_provenance
        from tandem.env.digest import stale_image_warning

        for warning in (stale_image_warning(), check_provenance()):
            if self.is_main and warning:
                print(warning, file=sys.stderr)

    def load_data(self) -> ImageData:
        """Rank 0 loads (and downloads) first; the other ranks then read the cached files."""
        c = self.config

        def load() -> ImageData:
            return load_dataset(
                c.dataset, c.data_dir, image_size=c.image_size or None, folder=c.folder or None, seed=c.seed
            )

        data, problem = None, None
        if self.is_main:
            try:
                data = load()
            except UsageError as exc:
                problem = str(exc)
        problem = distributed.gather(problem)[0]  # also makes the other ranks wait for the download
        if problem:
            raise UsageError(problem)
        return (data or load()).to(self.device)

    def choose_for_device(self) -> None:
        """Fill in the settings left to the device (batch size, log interval, compile), now that the data's
        size is known; they are recorded in config.json with the rest."""
        self.config, chosen = resolve_for_device(
            self.kind, self.config, self.device.type, self.layout.world_size, len(self.data.train_images)
        )
        c = self.config
        if chosen:
            shown = ", ".join(flag_text(name, value) for name, value in chosen.items())
            self.print(f"chosen for {self.device.type}: {shown} (flags given override these)")
        if c.batch_size > len(self.data.train_images):
            raise UsageError(
                f"--batch-size {c.batch_size} is larger than the {len(self.data.train_images)} training images of "
                f"{c.dataset}; pass a smaller --batch-size"
            )

    def open_run(self, identity: dict, flags: dict[str, str], total_steps: int | None = None) -> dict | None:
        """Claim the run directory (its lock) and decide what this attempt does to it (plan_attempt: start,
        resume from the newest complete checkpoint, whose model must be this one, or start over). The last
        check on the inputs: only after it is anything written."""
        self.identity = identity
        attempt, problem = None, None
        if self.is_main:  # rank 0 decides and holds the lock; the other ranks follow its decision
            try:
                attempt, self.lock = claim_attempt(self.kind, self.config, total_steps, report=self.print)
            except UsageError as exc:
                problem = str(exc)
        problem = distributed.gather(problem)[0]
        if problem:
            raise UsageError(problem)
        run_dir, checkpoint = distributed.gather((str(attempt.run_dir), attempt.checkpoint) if attempt else None)[0]
        if attempt is None:  # another rank: the same decision, and the same checkpoint read from the shared disk
            state = load_checkpoint(checkpoint) if checkpoint else None
        else:
            state = attempt.state
            self.config = attempt.config
        if state is not None:
            self.resumed_from = Path(checkpoint)
            check_identity(self.resumed_from, state["identity"], identity, flags)
            self.start_step = state["step"]
            self._elapsed_before = state["elapsed"]
            self.last_checkpoint = self.resumed_from
        self.run = run = RunDir(Path(run_dir), self.config.keep_checkpoints)
        if self.is_main:  # read (and report) what will be rewritten before writing anything
            records = run.read_metrics(report=self.print)
            previous = run.read_record() or {}
        distributed.gather(None)  # every rank has checked everything before rank 0 writes anything

        if self.is_main:
            run.create()
            run.forget_result()
            if attempt.action != START:
                run.rewind_metrics(self.start_step, records=records)
                run.checkpoints.remove_temporaries()
                run.checkpoints.set_aside_after(self.start_step)
            resolved = run_record(
                self.kind,
                self.config,
                identity,
                self.device,
                self.layout.world_size,
                {"train": len(self.data.train_images), "test": len(self.data.test_images)},
                resumed_from=self.resumed_from,
                changes=recorded_changes(attempt, previous),
                previous=previous,
            )
            run.write_config(resolved)
            if state is not None:
                run.log({"step": self.start_step, "resumed_from": self.resumed_from.name})  # marks the loss curve
            c = self.config
            self.loggers = Loggers.open(c.loggers, run.path, c.wandb_project, resolved, self.start_step)
        if attempt is not None and attempt.note:
            self.print(attempt.note)
        self.print(f"run: {run.path}" + (f" (resuming {self.resumed_from.name})" if state else ""))
        self._last_log = (time.perf_counter(), self.start_step)
        return state

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the loop calls: DDP-wrapped on several ranks, compiled with --compile."""
        model = distributed.wrap(model, self.layout, self.device)
        return torch.compile(model) if self.config.compile else model

    def restore(self, state: dict) -> None:
        """Put back this rank's random streams from a checkpoint."""
        if len(state["rng"]) == self.layout.world_size:
            restore_rng(state["rng"][self.layout.rank], self.generators)
        else:  # another world size: there is no saved stream for this rank; start fresh, reproducibly
            self.print(
                f"note: the checkpoint was written by {len(state['rng'])} ranks, this run has "
                f"{self.layout.world_size}; random streams restart from the seed"
            )
            for name, g in self.generators.items():
                g.manual_seed(derive_seed(self.config.seed, name, self.layout.rank, state["step"]))

    # -- during training ----------------------------------------------------

    def progress(self, total_steps: int) -> tqdm:
        """A progress bar in optimizer steps (img/s in its postfix), on rank 0 at a terminal only."""
        return tqdm(
            total=total_steps,
            initial=self.start_step,
            unit="step",
            desc=self.kind,
            dynamic_ncols=True,
            disable=not (self.is_main and sys.stderr.isatty()),
        )

    def should_stop(self, step: int, stop: StopSignal) -> bool:
        """SIGTERM / Ctrl-C, or --stop-after reached; all ranks agree. Several ranks compare their signals
        at log intervals only (each comparison waits for the device), so a stop lands within --log-every."""
        c = self.config
        by_limit = bool(c.stop_after) and step - self.start_step >= c.stop_after
        if self.layout.world_size > 1 and step % c.log_every and not by_limit:
            return False
        requested = distributed.any_rank(stop.received is not None, self.device)
        if requested and self.is_main:
            self.print(f"{stop.received or 'stop signal'} received: checkpointing at step {step} and stopping")
        return requested or by_limit

    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._started

    def log_window(self, step: int, window: LossWindow, bar: tqdm, **extra) -> dict:
        """Read the window's losses; stop on NaN/inf before anything is saved; log and show the rest."""
        loss, grad_norm, bad = window.read()
        first_bad = distributed.min_all(float("inf") if bad is None else bad, self.device)
        if first_bad != float("inf"):
            self.log({"step": int(first_bad), "diverged": True})
            diverged = {"kind": self.kind, "run_dir": str(self.run.path), "status": "diverged", "step": int(first_bad)}
            self.record_result("diverged", int(first_bad), {**diverged, "message": "loss became NaN/inf"})
            if self.is_main:
                self.run.plot_loss_curve()
            raise TrainingDiverged(int(first_bad), self.last_checkpoint)
        loss = distributed.sum_all([loss], self.device)[0] / self.layout.world_size
        now, (then, then_step) = time.perf_counter(), self._last_log
        images = (step - then_step) * self.config.batch_size
        record = {
            "step": step,
            "loss": loss,
            "grad_norm": grad_norm,
            **extra,
            "img_per_s": images / max(now - then - self._untimed, 1e-9),
            "elapsed_s": self.elapsed(),
        }
        self._last_log, self._untimed = (now, step), 0.0
        self.log(record)
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{record['img_per_s']:,.0f}", refresh=False)
        if bar.disable:
            self.print(
                f"step {step:>6}  loss {loss:.4f}  lr {record.get('lr', 0):.2e}  "
                f"{record['img_per_s']:,.0f} img/s  {record['elapsed_s']:.0f}s"
            )
        return record

    @contextlib.contextmanager
    def untimed(self, part: str):
        """Work between steps (one of SPENT) that the logged img/s does not count; the end-to-end figure does."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._spend(part, time.perf_counter() - start)

    def _spend(self, part: str, seconds: float) -> None:
        self._untimed += seconds
        self.spent[part] += seconds

    def first_step_compiled(self, step: int, seconds: float) -> None:
        """The first step under torch.compile, which waited for the compiler: logged, and left out of img/s."""
        self._spend("compile", seconds)
        self.log({"step": step, "compile_s": seconds})
        self.print(f"torch.compile: the first step took {seconds:.1f}s (compiling)")

    def loop_started(self) -> None:
        self._loop = (time.perf_counter(), self.start_step, 0.0)

    def loop_ended(self) -> None:
        """The loop's last checkpoint is on disk: the end-to-end time ends here."""
        if self.is_main:
            with self.untimed("checkpoint"):
                self.run.checkpoints.wait()
        start, start_step, _ = self._loop
        self._loop = (start, start_step, time.perf_counter() - start)

    def timing(self, step: int) -> dict:
        """Where this attempt's training time went, and img/s end to end: every step, checkpoint, sample
        grid and evaluation between its first and last step, over the wall time."""
        _, start_step, seconds = self._loop
        images = (step - start_step) * self.config.batch_size
        return {
            "loop_s": seconds,
            **{f"{part}_s": spent for part, spent in self.spent.items()},
            "step_img_per_s": images / max(seconds - sum(self.spent.values()), 1e-9),
            "end_to_end_img_per_s": images / max(seconds, 1e-9),
        }

    def log(self, record: dict) -> None:
        if self.is_main and self.run is not None:
            self.run.log(record)
            self.loggers.log(record)

    def save_checkpoint(self, step: int, training_state: dict) -> Path | None:
        """Collective: gathers every rank's random streams; rank 0 writes the file."""
        rng = distributed.gather(capture_rng(self.generators))
        if self.is_main:
            start = time.perf_counter()
            state = {
                "kind": self.kind,
                "step": step,
                "elapsed": self.elapsed(),
                "config": dataclasses.asdict(self.config),
                "identity": self.identity,
                "identity_digest": identity_digest(self.identity),
                "world_size": self.layout.world_size,
                "rng": rng,
                **training_state,
            }
            self.last_checkpoint = self.run.checkpoints.save(state, step, background=True)
            self._spend("checkpoint", time.perf_counter() - start)
        return self.last_checkpoint

    # -- the end ------------------------------------------------------------

    def finish(
        self, status: str, step: int, metrics: dict, artifacts: dict[str, Path], model: torch.nn.Module
    ) -> RunResult:
        ranks = None
        if self.layout.enabled:  # DDP keeps the ranks' weights identical; check that it did
            ranks = distributed.gather({"status": status, "step": step, "weights": weights_digest(model)})
            digests = [end["weights"] for end in ranks]
            metrics = {**metrics, "rank_weight_digests": digests, "ranks_identical": len(set(digests)) == 1}
            if len(set(digests)) > 1:
                self.print(f"warning: the ranks ended with different weights: {digests}")
        timing = self.timing(step)
        if self.is_main:
            self.run.checkpoints.wait()  # the last checkpoint is on disk (or its failure raised) before the end
            self.log({"step": step, "final": True, "status": status, **metrics, "timing": timing})
            artifacts = {"loss_curve": self.run.plot_loss_curve(), **artifacts}
            if self.last_checkpoint:
                artifacts["checkpoint"] = self.last_checkpoint
            summary = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            self.print(f"{status} at step {step} in {self.elapsed():.0f}s" + (f": {summary}" if summary else ""))
            if status == "stopped":
                self.print(f"continue with: {resume_command(self.kind, self.run.path, self.layout.world_size)}")
            self.print(f"run directory: {self.run.path}")
        result = RunResult(
            kind=self.kind,
            run_dir=str(self.run.path),
            status=status,
            step=step,
            metrics=metrics,
            checkpoint=str(self.last_checkpoint) if self.last_checkpoint else None,
            artifacts={k: str(v) for k, v in artifacts.items()},
            timing=timing,
        )
        self.record_result(status, step, dataclasses.asdict(result), ranks)
        return result

    def record_result(self, status: str, step: int, result: dict, ranks: list[dict] | None = None) -> None:
        """result.json: how this attempt ended, with each rank's own status and step (collective when
        `ranks` is None on several ranks). A supervisor reads this, not the launcher's exit code: torchrun
        exits non-zero after a stop that every rank recorded."""
        if ranks is None:
            ranks = distributed.gather({"status": status, "step": step})
        if self.is_main and self.run is not None:
            attempt = os.environ.get(ATTEMPT_VARIABLE) or None
            self.run.write_result({**result, "attempt": attempt, "ranks": ranks})

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        getattr(self, "run", None) and self.run.checkpoints.close()  # a write in flight lands before the lock goes
        self.loggers.close()  # it writes in the run directory: before the lock goes
        if self.lock is not None:
            self.lock.release()
        distributed.shutdown()
        torch.set_num_threads(self._threads)
