"""Everything a training process writes to its run directory, in one object that every rank holds and
rank 0 writes through (holding the run's lock):

    claim    take the lock and plan the attempt once (tandem.train.attempt: start, resume, start over)
    begin    check the checkpoint's model against this one; write config.json; open the loggers
    log      metrics.jsonl and the loggers (TensorBoard, W&B)
    save     a checkpoint, with every rank's random streams
    finish   the final record, loss_curve.png and result.json: what every target reads back

The files themselves (names, readers) are tandem.train.run.RunDir's. Methods that talk to other ranks
are called by all ranks at the same step.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from tandem.train import distributed
from tandem.train.attempt import RESUME, START, START_OVER, Attempt, check_total_steps, claim_attempt, recorded_changes
from tandem.train.checkpoint import capture_rng, check_identity, content_digest, identity_digest
from tandem.train.checkpoint import save as save_checkpoint
from tandem.train.checkpoint_names import BEST
from tandem.train.config import CONFIGS, TrainConfig, config_from_dict
from tandem.train.flags import DEFAULT, FLAG, RECORD
from tandem.train.loggers import Loggers
from tandem.train.run import RunDir, RunLock, RunResult, TrainingDiverged, resume_command, run_record

# Set by a supervisor (the Modal target) to tell its attempt's result.json from an earlier one's.
ATTEMPT_VARIABLE = "TANDEM_ATTEMPT_ID"


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of every parameter and buffer, to compare models across processes."""
    return content_digest(model.state_dict())[:16]


class RunWriter:
    def __init__(self, kind: str, layout: distributed.Distributed, report: Callable[[str], None]):
        self.kind, self.layout, self.is_main, self.report = kind, layout, layout.is_main, report
        self.attempt: Attempt | None = None  # rank 0's plan; the other ranks get its config and checkpoint
        self.config: TrainConfig | None = None  # what this attempt trains (the run's record, for a resume)
        self.dir: RunDir | None = None  # its files
        self.lock: RunLock | None = None
        self.loggers = Loggers()
        self.state: dict | None = None  # the checkpoint this attempt resumes from
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.start_step = 0
        self.identity: dict = {}
        self.record: dict = {}  # when the run started and the changes made to it, as config.json holds them
        self.given: Collection[str] | None = None  # the settings the caller set: names, or name -> source
        self.chosen: dict[str, str] = {}  # settings the run chose for itself -> what chose them
        self.last_loss: float | None = None  # the last logged loss window's mean
        self.begun = False
        self._elapsed_before = 0.0
        self._started = time.perf_counter()

    # -- before anything is written -----------------------------------------

    def claim(self, config: TrainConfig, given: Collection[str] | None = None) -> TrainConfig:
        """Rank 0 takes the run's lock and plans this attempt under it, once; every rank gets the config it
        trains and reads the same checkpoint. UsageError, on every rank, when the attempt must not run."""
        self.given = given

        def make_plan() -> tuple:
            self.attempt, self.lock = claim_attempt(self.kind, config, given, report=self.report)
            a = self.attempt
            return str(a.run_dir), str(a.checkpoint) if a.checkpoint else None, dataclasses.asdict(a.config)

        run_dir, checkpoint, values = distributed.from_main(distributed.first_where(self.is_main, make_plan))
        self.config = self.attempt.config if self.attempt else config_from_dict(CONFIGS[self.kind], values)
        self.dir = RunDir(Path(run_dir), self.config.keep_checkpoints)
        if checkpoint:  # rank 0 read it; the other ranks, on this node or another, get it from rank 0
            self.state = distributed.from_main(self.attempt.state if self.attempt else None)
            self.resumed_from = self.last_checkpoint = Path(checkpoint)
            self.start_step = self.state["step"]
            self._elapsed_before = self.state["elapsed"]
        if self.attempt is not None and self.attempt.note:
            self.report(self.attempt.note)
        return self.config

    def begin(
        self,
        config: TrainConfig,
        identity: dict,
        flags: dict[str, str],
        dataset: dict[str, int],
        device: torch.device,
        total_steps: int | None = None,
    ) -> dict | None:
        """The last check (the checkpoint's model must be this one, the run not past `total_steps`), then
        the run's files: config.json with `config` as trained, the loggers. Returns the checkpoint's state."""
        self.identity, self.config = identity, config

        def check() -> None:  # rank 0 holds the plan; its refusal reaches every rank
            if self.state is not None:
                check_identity(self.resumed_from, self.state["identity"], identity, flags)
            if total_steps is not None and self.attempt.action == RESUME:
                check_total_steps(self.attempt, total_steps)

        distributed.first_where(self.is_main, check)

        if self.is_main:
            run, attempt = self.dir, self.attempt
            records = run.read_metrics(report=self.report)  # reported before anything is rewritten
            previous = attempt.record  # config.json, or its copy in the checkpoint when that was lost
            run.create()
            run.forget_result()
            if attempt.action == START_OVER:  # nothing trained to keep, but its history is kept for a look
                kept = run.set_aside_history()
                if kept:
                    self.report(
                        f"the earlier attempt's metrics and grids are kept as {', '.join(p.name for p in kept)}"
                    )
            elif attempt.action == RESUME:
                run.rewind_metrics(self.start_step, records=records)
            if attempt.action != START:
                run.remove_stale_temporaries()
                run.checkpoints.set_aside_after(self.start_step)
            resolved = run_record(
                self.kind,
                config,
                identity,
                device,
                self.layout,
                dataset,
                resumed_from=self.resumed_from,
                changes=recorded_changes(attempt, previous),
                previous=previous,
                sources=self.sources(config, previous),
                total_steps=total_steps,
            )
            run.write_config(resolved)
            self.record = {"started": resolved["started"], "changes": resolved["changes"]}
            if self.state is not None:
                run.log({"step": self.start_step, "resumed_from": self.resumed_from.name})  # marks the loss curve
            self.loggers = Loggers.open(config.loggers, run.path, config.wandb_project, resolved, self.start_step)
        self.begun = True
        self.report(f"run: {self.dir.path}" + (f" (resuming {self.resumed_from.name})" if self.state else ""))
        distributed.gather(None)  # no rank trains before the run's files are in place
        return self.state

    def sources(self, config: TrainConfig, previous: dict) -> dict[str, str]:
        """config.json's "sources": where each setting came from. A flag or a --config file (as the caller
        says), what the run chose for itself ("chosen by ..."), the run's record when it is continued (with
        what that record said), else the default."""
        given = self.given
        if given is None:  # run_training called with a whole config: every setting is the caller's
            given = dict.fromkeys((f.name for f in dataclasses.fields(config)), "set by the caller")
        elif not isinstance(given, dict):
            given = dict.fromkeys(given, FLAG)
        continued = self.attempt is not None and self.attempt.action != START
        recorded = previous.get("sources") if continued and isinstance(previous.get("sources"), dict) else {}
        found = {}
        for f in dataclasses.fields(config):
            if f.name in self.chosen:
                found[f.name] = self.chosen[f.name]
            elif f.name in given:
                found[f.name] = given[f.name]
            else:
                found[f.name] = recorded.get(f.name, RECORD) if continued else DEFAULT
        return found

    # -- during training ----------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of training this run has had, over all its attempts."""
        return self._elapsed_before + time.perf_counter() - self._started

    def log(self, record: dict) -> None:
        if self.is_main and self.begun:
            self.dir.log(record)
            self.loggers.log(record)
            if "loss" in record:
                self.last_loss = record["loss"]

    def log_image(self, tag: str, path: Path, step: int) -> None:
        """A grid written to the run (rank 0), shown by the loggers as an image of `step`."""
        if self.is_main and self.begun:
            self.loggers.log_image(tag, path, step)

    def save(self, step: int, training_state: dict, generators: dict[str, torch.Generator]) -> Path | None:
        """Collective: gathers every rank's random streams; rank 0 writes the file (in the background)."""
        rng = distributed.gather(capture_rng(generators))
        if self.is_main:
            state = {
                "kind": self.kind,
                "step": step,
                "elapsed": self.elapsed(),
                "config": dataclasses.asdict(self.config),
                "identity": self.identity,
                "identity_digest": identity_digest(self.identity),
                "world_size": self.layout.world_size,
                "nodes": self.layout.nodes,
                "record": self.record,  # config.json's history, to restore it should it be lost
                "rng": rng,
                **training_state,
            }
            self.last_checkpoint = self.dir.checkpoints.save(state, step, background=True)
        return self.last_checkpoint

    def save_best(self, step: int, training_state: dict) -> None:
        """checkpoints/best.pt: the weights validation prefers so far (rank 0; written at once, atomically)."""
        if self.is_main:
            state = {
                "kind": self.kind,
                "step": step,
                "config": dataclasses.asdict(self.config),
                "identity": self.identity,
                "identity_digest": identity_digest(self.identity),
                **training_state,
            }
            save_checkpoint(state, self.dir.checkpoints.directory / BEST)

    def wait(self) -> None:
        """The last checkpoint is on disk (or its failure raised)."""
        if self.is_main:
            self.dir.checkpoints.wait()

    def diverged(self, step: int) -> None:
        """A NaN/inf loss at `step`: recorded (nothing of it saved), then TrainingDiverged."""
        self.log({"step": step, "diverged": True})
        result = {"kind": self.kind, "run_dir": str(self.dir.path), "status": "diverged", "step": step}
        self.record_result("diverged", step, {**result, "message": "loss became NaN/inf"})
        if self.is_main:
            self.dir.plot_loss_curve()
        raise TrainingDiverged(step, self.last_checkpoint)

    # -- the end ------------------------------------------------------------

    def finish(
        self,
        status: str,
        step: int,
        metrics: dict,
        artifacts: dict[str, Path],
        model: torch.nn.Module,
        timing: dict,
    ) -> RunResult:
        """The final record, the loss curve and result.json (collective); the RunResult every target gets."""
        ranks = None
        if self.layout.enabled:  # DDP keeps the ranks' weights identical; check that it did
            ranks = distributed.gather({"status": status, "step": step, "weights": weights_digest(model)})
            digests = [end["weights"] for end in ranks]
            metrics = {**metrics, "rank_weight_digests": digests, "ranks_identical": len(set(digests)) == 1}
            if len(set(digests)) > 1:
                self.report(f"warning: the ranks ended with different weights: {digests}")
        if self.is_main:
            self.wait()
            self.log({"step": step, "final": True, "status": status, **metrics, "timing": timing})
            final = {"loss": self.last_loss, **metrics} if self.last_loss is not None else metrics
            self.loggers.hparams(dataclasses.asdict(self.config), final, step)
            artifacts = {"loss_curve": self.dir.plot_loss_curve(), **artifacts}
            if self.last_checkpoint:
                artifacts["checkpoint"] = self.last_checkpoint
            summary = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            self.report(f"{status} at step {step} in {self.elapsed():.0f}s" + (f": {summary}" if summary else ""))
            if status == "stopped":
                self.report(f"continue with: {resume_command(self.kind, self.dir.path, self.layout)}")
            self.report(f"run directory: {self.dir.path}")
        result = RunResult(
            kind=self.kind,
            run_dir=str(self.dir.path),
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
        if self.is_main and self.begun:
            attempt = os.environ.get(ATTEMPT_VARIABLE) or None
            self.dir.write_result({**result, "attempt": attempt, "ranks": ranks})

    def close(self) -> None:
        """A checkpoint in flight lands and the loggers close before the lock goes; a directory claimed for
        an attempt that never began, and holding nothing, is removed."""
        if self.dir is not None and self.is_main:
            self.dir.checkpoints.close()
        self.loggers.close()
        if self.lock is not None:
            if not self.begun and not self.dir.started():
                shutil.rmtree(self.dir.path, ignore_errors=True)
            self.lock.release()
            self.lock = None
