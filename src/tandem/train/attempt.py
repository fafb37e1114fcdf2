"""What one attempt at a run does: start a new run, continue one, start one over, or refuse.

A run is what its config.json records. Continuing it (`--resume`, or a retried attempt on Modal) trains
that config again. A setting the caller gives either may change for a continued run (CHANGEABLE: its
length, cadence, sampling and evaluation, how fast it runs), and is then recorded in config.json under
"changes" with the step it took effect, or it is refused in one line naming the flag and its recorded
value. PER_ATTEMPT settings belong to one invocation (where this machine keeps things, whether to resume,
when to stop this time) and are never inherited. A run with no complete checkpoint has nothing trained to
keep, so continuing it starts it over. A run that has nothing left to train is refused unless the
continuation makes it longer.

The record must be what trained: config.json is checked against the config its checkpoint recorded, and
a difference that no recorded change explains (a hand edit, a damaged file) is refused, naming each
field. A missing or unreadable config.json is restored from the checkpoint, which carries the record too.

`plan_attempt` only reads. It runs once per attempt, in the training process, under the run's lock
(`claim_attempt`); every target hands the user's settings and the names of those given down to it.
"""

from __future__ import annotations

import shutil
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from tandem.errors import UsageError
from tandem.train.config import CONFIGS, TrainConfig
from tandem.train.flags import CHOSEN, LENGTHS, TYPE_WORDS, flag_name, flag_text, show_value
from tandem.train.run import RunDir, RunLock
from tandem.train.validate import validate

START, RESUME, START_OVER = "start", "resume", "start over"

CHANGEABLE = frozenset(
    {
        # its length: a continued run may be extended (or shortened, never below the step it reached)
        "steps",
        "epochs",
        # cadence and bookkeeping
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "sample_every",
        # sampling and evaluation only: the training itself is unchanged
        "samples_per_class",
        "sample_steps",
        "solver",
        "cfg_scale",
        "classifier_checkpoint",
        "eval_samples",
        "tta",
        # where and how fast, not what
        "device",
        "cpu_threads",
        "compile",
    }
)
PER_ATTEMPT = frozenset({"resume", "stop_after", "runs_dir", "run_name", "data_dir"})


@dataclass
class Attempt:
    action: str  # START, RESUME or START_OVER
    config: TrainConfig  # what this attempt trains: for a continued run, its record with the allowed changes
    run_dir: Path
    checkpoint: Path | None = None  # the complete checkpoint a resume continues from
    step: int = 0  # that checkpoint's step
    changes: dict[str, tuple] = field(default_factory=dict)  # field -> (recorded value, this attempt's value)
    note: str = ""  # one line saying what this attempt does
    state: dict | None = field(default=None, repr=False, compare=False)  # the loaded checkpoint
    record: dict = field(default_factory=dict, repr=False)  # the record continued: config.json, or as restored


def plan_attempt(
    kind: str,
    config: TrainConfig,
    given: Collection[str] | None = None,
    *,
    total_steps: int | None = None,
    report: Callable[[str], None] = print,
) -> Attempt:
    """Decide what training `config` does to its run, reading only; UsageError when it must not run.

    given: the fields the caller set (flags typed, keys of a --config file); the others come from the run's
      record when it is continued. None: every field of `config` counts as set.
    total_steps: the steps `config` trains in all, when known (the classifier's depend on the data).
    report: where unusable checkpoints are named on the way to the newest complete one.
    """
    given = {f.name for f in fields(config)} if given is None else set(given)
    runs_dir = Path(config.runs_dir)
    path = locate_run(kind, config)
    if not config.run_name:
        if not config.resume:  # a new run: its name is claimed when its directory is made
            return Attempt(START, config, path)
        config = replace(config, run_name=path.name)
    run = RunDir(path)
    if not run.started():
        if config.resume:
            raise UsageError(f"--resume: there is no run {run.path}; drop --resume to start it")
        RunDir.new_path(runs_dir, kind, config.run_name)  # the same checks as a new run
        return Attempt(START, replace(config, resume=False), run.path)
    if not config.resume:
        RunDir.new_path(runs_dir, kind, config.run_name)  # refuses: the directory is in use
    config = replace(config, resume=True)

    record = run.read_record()
    if record and record.get("kind") != kind:
        raise UsageError(
            f"{run.path} is a {record.get('kind')} run; continue it with tandem train {record.get('kind')}"
        )
    found = run.checkpoints.latest_valid(report=report)
    if found is None:
        resolved, _ = _merge(kind, record["config"] if record else {}, config, given, start_over=True, record=record)
        return Attempt(
            START_OVER,
            resolved,
            run.path,
            note=f"{run.path} has no complete checkpoint, so nothing trained to keep: starting it over from step 0",
        )

    checkpoint, state = found
    if state.get("kind") != kind:
        raise UsageError(
            f"checkpoint {checkpoint} is a {state.get('kind')} checkpoint; resume it with tandem train {state.get('kind')}"
        )
    trained = state.get("config") or {}
    restored = ""
    if record is None:  # the checkpoint carries the record: its config, when the run started, its changes
        record = {**(state.get("record") or {}), "kind": kind, "config": trained}
        problem = "is unreadable or not a run's record" if run.config_path.exists() else "is missing"
        restored = f"{run.config_path} {problem}: restored from {checkpoint.name}; "
    recorded = _in_force(run, record, trained, checkpoint, given)
    resolved, changes = _merge(kind, recorded, config, given, start_over=False, record=record)
    step = state["step"]
    _check_length(run, resolved, step, total_steps, changes)
    shown = "; ".join(f"{flag_name(k)} {show_value(a)} -> {show_value(b)}" for k, (a, b) in changes.items())
    note = f"{restored}resuming {run.path} from {checkpoint.name}"
    note += f"; changed from step {step}: {shown}" if shown else ""
    return Attempt(RESUME, resolved, run.path, checkpoint, step, changes, note, state, record)


def claim_attempt(
    kind: str, config: TrainConfig, given: Collection[str] | None = None, report: Callable[[str], None] = print
) -> tuple[Attempt, RunLock]:
    """Lock the run directory (making it for a new run), then plan the attempt under the lock, the one
    time it is planned (tandem.train.run_writer.RunWriter.claim, on rank 0). A refused attempt releases
    the lock and removes a directory it made."""
    path = locate_run(kind, config)
    RunDir.check_location(path.parent, path.name)  # before the lock is made there
    existed = path.is_dir()
    try:
        if not config.run_name and not config.resume:  # claim a fresh name: mkdir is atomic
            while True:
                try:
                    path.mkdir(parents=True)
                    break
                except FileExistsError:
                    path = RunDir.new_path(config.runs_dir, kind, "")
        lock = RunLock(path)
        lock.acquire()
    except OSError as exc:
        if existed and RunDir(path).started():
            raise  # a run that cannot be written now: the command names the file, and --resume for later
        if not existed:  # where no run can be made (/proc/x, a read-only disk): nothing made, nothing to resume
            shutil.rmtree(path, ignore_errors=True)
        raise UsageError(
            f"--runs-dir {config.runs_dir}: cannot create the run {path} ({exc.strerror}); pass a writable --runs-dir"
        ) from None
    try:  # again under the lock: another process may have written the run in between
        attempt = plan_attempt(kind, replace(config, run_name=path.name), given, report=report)
    except BaseException:
        lock.release()
        if not existed or not RunDir(path).started():
            shutil.rmtree(path, ignore_errors=True)
        raise
    return attempt, lock


def check_total_steps(attempt: Attempt, total_steps: int) -> None:
    """A resumed run's length in steps is known once its data is (a length in epochs): the same rule, exact."""
    _check_length(RunDir(attempt.run_dir), attempt.config, attempt.step, total_steps, attempt.changes)


def recorded_changes(attempt: Attempt | None, previous: dict) -> list[dict]:
    """config.json's "changes": those recorded before (when the run is continued) and this attempt's."""
    changes = list(previous.get("changes") or []) if attempt is not None and attempt.action == RESUME else []
    if attempt is not None:
        changes += [
            {"step": attempt.step, "setting": name, "from": before, "to": after}
            for name, (before, after) in attempt.changes.items()
        ]
    return changes


def locate_run(kind: str, config: TrainConfig) -> Path:
    """The directory an attempt is about: --run-name's; without one, the newest run of this kind with a
    checkpoint (--resume), or a fresh name."""
    if config.run_name or config.resume:
        return RunDir.to_resume(config.runs_dir, kind, config.run_name)
    return RunDir.new_path(config.runs_dir, kind, "")


def _in_force(run: RunDir, record: dict, trained: dict, checkpoint: Path, given: Collection[str]) -> dict:
    """The settings a continued run trains with: those its checkpoint trained with, and the changes
    config.json records since (a change made by an attempt that stopped before its next checkpoint).
    Any other difference between the two is refused, naming each field: the record must be what trains.
    A changeable setting given again by its flag is not a difference: the flag changes it from the checkpoint's."""
    recorded = record["config"]
    last_change = {c.get("setting"): c.get("to") for c in record.get("changes") or [] if isinstance(c, dict)}
    in_force, differing = dict(recorded), []
    for name, value in trained.items():
        if name in PER_ATTEMPT:
            continue
        if name in recorded and _same(recorded[name], value):
            continue
        if name in recorded and name in CHANGEABLE and name in last_change and _same(last_change[name], recorded[name]):
            continue
        in_force[name] = value
        if name in recorded and not (name in CHANGEABLE and name in given):
            differing.append(name)
    if differing:
        edited = ", ".join(f"{name} = {recorded[name]!r}" for name in differing)
        kept = " ".join(flag_text(name, trained[name]) for name in differing)
        fix = (
            "put the checkpoint's values back in config.json (or delete it: --resume restores it from the "
            "checkpoint), or start a new run with another --run-name"
        )
        if all(name in CHANGEABLE for name in differing):
            wanted = " ".join(flag_text(name, recorded[name]) for name in differing)
            fix += f"; a continued run changes them by their flags: --resume {wanted}"
        raise UsageError(
            f"--resume: {run.config_path} records {edited}, but checkpoint {checkpoint.name} trained with {kept} "
            f"and no recorded change explains it; {fix}"
        )
    return in_force


def _same(a, b) -> bool:
    """Equal values of one type (1 and 1.0 are the same number; True is not 1)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool) and isinstance(a, str) == isinstance(b, str)


def _merge(kind: str, recorded: dict, config: TrainConfig, given: set[str], *, start_over: bool, record=None):
    """The run's recorded settings, with this attempt's given ones where they may change. A setting the run
    chose for itself (its record's sources say "chosen by ...") is kept when this attempt leaves it to be
    chosen (0, None): the record holds what that choice was."""
    cls = CONFIGS[kind]
    types = typing.get_type_hints(cls)
    sources = (record or {}).get("sources")
    chosen = {n for n, source in sources.items() if str(source).startswith(CHOSEN)} if isinstance(sources, dict) else ()
    values, changes = {}, {}
    for f in fields(cls):
        now = getattr(config, f.name)
        if f.name in PER_ATTEMPT or f.name not in recorded:
            values[f.name] = now
            continue
        may_change = start_over or f.name in CHANGEABLE
        left_to_choose = f.name in chosen and now in (0, None) and not isinstance(now, bool)
        if f.name in given and may_change and not left_to_choose and not _same(now, recorded[f.name]):
            values[f.name] = now
            if not start_over:
                changes[f.name] = (recorded[f.name], now)
            continue
        before = _recorded_value(recorded[f.name], types[f.name], f.name, may_change)
        if f.name not in given or now == before or left_to_choose:
            values[f.name] = before
        else:
            raise UsageError(
                f"--resume: {flag_text(f.name, now)} differs from the run's recorded {flag_text(f.name, before)}; a "
                f"continued run keeps it: drop {flag_name(f.name)}, or start a new run with another --run-name"
            )
    resolved = cls(**values)
    validate(resolved)
    return resolved, changes


def _recorded_value(value, kind: type, name: str, may_change: bool):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        fix = f"pass {flag_name(name)} to set it, or fix config.json" if may_change else "fix config.json"
        raise UsageError(f"the run's config.json records {name} = {value!r}, not {TYPE_WORDS[kind]}; {fix}")
    return value


def _length(config: TrainConfig) -> str:
    """The run's length as flags: --steps 600, --epochs 15, or both (whichever ends first)."""
    return " and ".join(flag_text(name, getattr(config, name)) for name in ("steps", "epochs") if getattr(config, name))


def _check_length(run, resolved, step, total_steps, changes) -> None:
    """A continued run trains on from `step`: it may be extended, never cut below it, and one that is
    complete must be extended to continue. `total_steps`: the run's length in steps, when known (a length
    in epochs is known once the data is)."""
    if total_steps is None and not resolved.epochs:
        total_steps = resolved.steps
    if total_steps is not None and total_steps < step:
        raise UsageError(
            f"--resume: {_length(resolved)} ends before step {step}, which {run.path} has reached; "
            "pass a larger --steps or --epochs"
        )
    # Complete: it reached its length and its final record was written; one killed between its last
    # checkpoint and that record continues, training nothing, to write its final artefacts.
    finals = [r for r in run.read_metrics() if r.get("final")]
    finished = bool(finals) and finals[-1].get("status") == "completed" and finals[-1]["step"] == step
    if total_steps is not None:
        complete = finished and step >= total_steps
    else:  # a length in epochs before the data is loaded: a changed length is decided once it is
        complete = finished and not (LENGTHS & changes.keys())
    if complete:
        raise UsageError(
            f"--resume: {run.path} is complete (step {step}, {_length(resolved)}); pass a larger --steps or "
            "--epochs to train it further, or start a new run with another --run-name"
        )
