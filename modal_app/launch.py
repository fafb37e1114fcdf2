"""The entrypoint's work on this machine: read the words, pick the target (Modal, or here), call the
Function there (`.remote`, or `.spawn` when detached), and copy the run's outputs into --outputs/<run>/.

Everything is checked before anything is sent: flags, GPU type and count, timeout, credentials, and on
Modal the runs and checkpoints named, in the runs Volume.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import modal

from tandem.env import modal_login as login
from tandem.errors import UsageError
from tandem.files import write_text_atomic
from tandem.train.config import CONFIGS, default_runs_dir
from tandem.train.validate import validate

from . import functions, resources
from .flags import PROG, Request, parse
from .outputs import THE_FILE, DirFiles, VolumeFiles, copy_outputs, wanted
from .supervisor import RunInterrupted


def launch(argv: list[str], app_running: bool, detached: bool = False) -> int:
    """Run the command these words name. `app_running`: under `modal run` (the app is up); `detached`:
    with `modal run --detach`. Returns the exit code."""
    command = argv[0] if argv and not argv[0].startswith("-") else "dit"
    try:
        request = parse(argv, functions.settings)
        command = request.command
        where, why = choose_target(request.target.local, app_running)
        if command == "fetch":
            return fetch(request, where)
        if command == "runs":
            return list_runs(request, where)
        target = request.target
        place = resources.placement(
            target.gpu, target.gpus, target.timeout, functions.settings, target.nodes, target.rdma
        )
        detach = check_detach(request.target.detach, detached, where, app_running)
        if place.nodes > 1 and where == "local":
            raise UsageError(
                "--nodes starts a Modal cluster; on this machine use `tandem train ... --nodes N --node-rank R --master-addr HOST`"
            )
        # Everything the call needs is checked before the first line about it is printed.
        if command in CONFIGS:
            config = training_config(request, where)
            job = lambda: train(request, config, place, where, detach)  # noqa: E731
        elif command == "sample":
            options = sample_options(request, where)
            job = lambda: sample(request, options, place, where)  # noqa: E731
        else:
            job = lambda: run_check(place, where, Path(request.target.outputs) / "fingerprints")  # noqa: E731
        print(f"target: {'Modal, ' + place.describe() if where == 'modal' else 'this machine'} ({why})")
        with modal_session(where, app_running, detach):
            return job()
    except UsageError as exc:
        print(f"{PROG} {command}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code


def choose_target(local: bool, app_running: bool) -> tuple[str, str]:
    """("modal" | "local", why)."""
    if local:
        return "local", "--local was given"
    if app_running:
        return "modal", "started by `modal run`"
    if source := login.credentials_source():
        return "modal", f"Modal credentials found: {source}"
    return "local", f"no Modal credentials; to use Modal, {login.LOGIN}"


def check_detach(asked: bool, detached: bool, where: str, app_running: bool) -> bool:
    """Whether this call is spawned and left running; a detached run needs Modal and, under `modal run`,
    Modal's own --detach (else the app, and the run with it, stops when this entrypoint returns)."""
    if not (asked or detached):
        return False
    if where == "local":
        raise UsageError(
            "--detach starts the run on Modal; drop --local"
            if app_running or login.credentials_source()
            else f"--detach starts the run on Modal, and this machine has no Modal credentials; {login.LOGIN}"
        )
    if app_running and not detached:
        raise UsageError(f"under `modal run`, detach with Modal's own flag: modal run --detach {PROG} ...")
    return True


def modal_cli_detached() -> bool:
    """Whether `modal run --detach` started this entrypoint (Modal's CLI keeps its flags in the click context)."""
    import click

    ctx = click.get_current_context(silent=True)
    return bool(ctx and isinstance(ctx.obj, dict) and ctx.obj.get("detach"))


@contextmanager
def modal_session(where: str, app_running: bool, detach: bool = False):
    """A run of the app (streaming its logs here) when calling Modal from plain Python; detached, it
    outlives this process."""
    if where == "local" or app_running:
        yield
        return
    with modal.enable_output(), functions.app.run(detach=detach):
        yield


@contextmanager
def quiet_local_volumes(where: str):
    # Run here, the body uses the local data and runs dirs; Modal's warning that the Volumes are not
    # mounted would only confuse.
    if where != "local":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally.*Volume")
        yield


def call(function, where: str, place: resources.Placement, *args):
    """`.remote` of the Function on Modal with this placement, `.local` here."""
    if where == "modal":
        return function.with_options(**place.options()).remote(*args)
    with quiet_local_volumes(where):
        return function.local(*args)


# -----------------------------------------------------------------------------
# train


def training_config(request: Request, where: str):
    """The config `tandem train <kind>` builds from the same words, with the Volumes' paths on Modal and a
    run name fixed here, so a retried, restarted or continued call finds the same run."""
    from tandem.train.commands import RUN_REF, continued
    from tandem.train.flags import GIVEN

    kind = request.command
    config = request.config()
    if ref := getattr(request.tandem, RUN_REF, None):  # the run to continue, in the target's runs store
        store = source(functions.settings.runs_dir if where == "modal" else config.runs_dir, where)
        config, names = continued(kind, config, request.given(), ref, store)
        setattr(request.tandem, GIVEN, frozenset(names))
    flag, checkpoint = "--classifier-checkpoint", getattr(config, "classifier_checkpoint", "")
    if where == "modal":
        volume_paths = {"data_dir": functions.settings.data_dir, "runs_dir": functions.settings.runs_dir}
        if checkpoint:
            volume_paths["classifier_checkpoint"] = volume_checkpoint(flag, checkpoint, "classifier")
        config = dataclasses.replace(config, **volume_paths)
    elif checkpoint:  # the file a run names, recorded as the file (as `tandem train` does)
        from tandem.runs import resolve_checkpoint

        found = resolve_checkpoint(checkpoint, config.runs_dir, "classifier", flag)
        config = dataclasses.replace(config, classifier_checkpoint=str(found))
    if not config.run_name and not config.resume:
        config = dataclasses.replace(config, run_name=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    # Every flag is checked before a container starts; a checkpoint named for Modal lives in its Volume.
    validate(dataclasses.replace(config, classifier_checkpoint="") if where == "modal" and kind == "dit" else config)
    return config


def volume_checkpoint(flag: str, ref: str, kind: str) -> str:
    """A checkpoint named for Modal, as its path in the runs Volume: a file there, or the checkpoint of a run
    there (named as tandem.runs names runs: its best, else its newest)."""
    from tandem.runs import checkpoint_file, resolve

    relative = in_volume(ref)
    if relative is None:  # an absolute path outside the Volume: the container checks it
        return ref
    if PurePosixPath(relative).suffix == ".pt":
        require_file(flag, ref)
        return in_runs_volume(ref)
    store = source(functions.settings.runs_dir, "modal")
    name = resolve(PurePosixPath(relative).parts[0] if relative.strip("/") else relative, store, kind, flag)
    found = checkpoint_file(store, name)
    if found is None:
        raise UsageError(f"{flag} {ref}: run {name} in Volume {functions.RUNS_VOLUME} has saved no checkpoint yet")
    return f"{functions.settings.runs_dir}/{name}/{found}"


def in_runs_volume(path: str) -> str:
    """A checkpoint path given for Modal: relative to the runs Volume (absolute ones are taken as they are)."""
    if not path or path.startswith("/"):
        return path
    return f"{functions.settings.runs_dir}/{PurePosixPath(path).as_posix()}"


def train(request: Request, config, place: resources.Placement, where: str, detach: bool) -> int:
    kind = request.command
    function, lead = functions.training_function(kind, place)
    args = (*lead, dataclasses.asdict(config), place.as_dict(), request.given())
    if detach:
        started = function.with_options(**place.options()).spawn(*args)
        print(detached_summary(kind, config.run_name, started.object_id))
        return 0
    if where == "modal":
        print(f"run: {config.run_name or 'the newest ' + kind + ' run'} in Volume {functions.RUNS_VOLUME}")
    try:
        result = call(function, where, place, *args)
        while result["status"] == "continued":  # the run outlasted a call: follow it into the next
            print(f"{kind} reached step {result['step']} in this call's time; continuing in call {result['call_id']}")
            result = modal.FunctionCall.from_id(result["call_id"]).get()
    except RunInterrupted as exc:  # only here: on Modal the call is retried
        print(f"{exc}: run the same command with --run-name {config.run_name} to continue", file=sys.stderr)
        return 1
    if result["status"] == "error":
        if result.get("shown"):  # the trainer's own one line, already on stderr (streamed from Modal)
            return UsageError.exit_code
        raise UsageError(result["message"])
    run = Path(result["run_dir"]).name
    written = copy_outputs(source(config.runs_dir, where), run, request.target.outputs)
    print(f"{kind} {result['status']} at step {result.get('step', '?')}{summary(result)}")
    print(f"outputs: {Path(request.target.outputs) / run}/ ({len(written)} files)")
    if where == "modal":
        print(
            f"checkpoints: Volume {functions.RUNS_VOLUME}, {run}/checkpoints/ (`modal volume get {functions.RUNS_VOLUME} {run}/checkpoints`)"
        )
    return 1 if result["status"] == "diverged" else 0


def detached_summary(kind: str, run: str, call_id: str) -> str:
    """What to do with a run left running: its call, and the exact commands to follow and fetch it."""
    app_id = functions.app.app_id
    named = run or f"(the newest {kind} run)"
    run = run or "<run-name>"  # --resume without --run-name: the container picks the run
    return "\n".join(
        [
            f"started {kind} run {named} as call {call_id} (app {app_id}); it keeps running when this machine sleeps",
            f"follow:  modal app logs {app_id} --follow",
            f"fetch:   modal run {PROG} fetch {run}     (outputs so far, or at the end, into ./outputs/{run}/)",
            f"stop:    modal app stop {app_id}",
        ]
    )


def summary(result: dict) -> str:
    if result["status"] == "diverged":
        return ": " + result["message"]
    metrics = result.get("metrics") or {}
    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    return f": {text}" if text else ""


def source(runs_dir: str, where: str):
    return VolumeFiles(functions.runs_volume, functions.RUNS_VOLUME) if where == "modal" else DirFiles(runs_dir)


def on_runs_store(where: str, path: str, holding=lambda relative: True) -> bool:
    """Whether the target's runs store (the runs Volume on Modal, the runs dir here) has `path`, relative to
    it: a folder holding a file that `holding` accepts (given the file's path inside the folder); with
    `holding=the_file`, a file."""
    return any(map(holding, source(default_runs_dir(), where).files(PurePosixPath(path).as_posix())))


def the_file(relative: str) -> bool:
    return relative == THE_FILE


def a_checkpoint(relative: str) -> bool:
    """A run's checkpoint file, by its path inside the run."""
    from tandem.train.checkpoint import NAME

    path = PurePosixPath(relative)
    return path.parent.as_posix() == "checkpoints" and bool(NAME.match(path.name))


def in_volume(path: str) -> str | None:
    """A path given for Modal as the runs Volume names it; None for an absolute one outside the Volume (the
    container checks that one)."""
    if not path.startswith("/"):
        return path
    inside, runs_dir = PurePosixPath(path), PurePosixPath(functions.settings.runs_dir)
    return inside.relative_to(runs_dir).as_posix() if inside.is_relative_to(runs_dir) else None


def require_file(flag: str, path: str) -> None:
    """A checkpoint file named for Modal is in the runs Volume, else one line saying how to find one."""
    relative = in_volume(path) if path else None
    if relative is not None and not on_runs_store("modal", relative, the_file):
        raise UsageError(
            f"{flag} {path}: no such file in Volume {functions.RUNS_VOLUME} (paths are relative to it); "
            f"pass a run instead (its name or latest: `modal run {PROG} runs` lists them)"
        )


def require_run(run: str) -> None:
    """A run named for Modal is in the runs Volume with a checkpoint, else one line saying how to find one."""
    if on_runs_store("modal", run, a_checkpoint):
        return
    listing = f"`modal run {PROG} runs`"
    if on_runs_store("modal", run):
        raise UsageError(
            f"--run {run}: no checkpoint in Volume {functions.RUNS_VOLUME}, {run}/checkpoints/; pass a DiT run "
            f"that has saved one (list the runs with {listing})"
        )
    raise UsageError(f"--run {run}: no run {run!r} in Volume {functions.RUNS_VOLUME}; list the runs with {listing}")


# -----------------------------------------------------------------------------
# fetch


def require_store(command: str, request: Request, where: str) -> None:
    if where == "local" and not request.target.local:
        raise UsageError(
            f"{command} reads the runs Volume on Modal, and this machine has no Modal credentials; {login.LOGIN}"
        )


def list_runs(request: Request, where: str) -> int:
    """`tandem runs` of the runs Volume (or, here, the runs dir)."""
    from tandem import runs

    require_store("runs", request, where)
    store, now = source(default_runs_dir(), where), time.time()
    found = runs.list_runs(store, request.target.kind)
    if request.target.json:
        print(json.dumps([r.as_json(now) for r in found], indent=2))
    else:
        print(runs.table(found, now) if found else f"no runs in {store.describe()} yet")
    return 0


def fetch(request: Request, where: str) -> int:
    """Copy a run's outputs from the runs Volume (or, here, the runs dir) without training."""
    from tandem.runs import resolve

    require_store("fetch", request, where)
    run = request.run
    if not run or "/" in run.strip("/") or run in (".", ".."):
        raise UsageError(f"fetch {run!r}: give a run's name, e.g. dit-20260101-120000")
    run = resolve(run, source(default_runs_dir(), where), flag="fetch")
    if not on_runs_store(where, run, wanted):
        where_from = f"Volume {functions.RUNS_VOLUME}" if where == "modal" else default_runs_dir()
        listing = f"modal run {PROG} runs" + ("" if where == "modal" else " --local")
        raise UsageError(f"no outputs of run {run!r} in {where_from}; list the runs with `{listing}`")
    written = copy_outputs(source(default_runs_dir(), where), run, request.target.outputs)
    print(f"outputs: {Path(request.target.outputs) / run}/ ({len(written)} files)")
    return 0


# -----------------------------------------------------------------------------
# sample


def sample_options(request: Request, where: str) -> dict:
    """`tandem sample`'s parsed flags; on Modal, --run is a run of the runs Volume and --checkpoint a path
    inside it."""
    options = {k: v for k, v in vars(request.tandem).items() if k not in ("command", "func")}
    if options["checkpoint"] and PurePosixPath(options["checkpoint"]).suffix != ".pt":  # a run, as --run
        options["run"], options["checkpoint"] = options["checkpoint"], None
    if where == "modal":
        runs_dir = functions.settings.runs_dir
        if options["out"]:
            raise UsageError("--out writes on this machine only; on Modal the grid lands in the run's samples/")
        if options["run"]:
            from tandem.runs import resolve

            name = resolve(PurePosixPath(options["run"]).name, source(runs_dir, where), kind="dit")
            require_run(name)
            options["run"] = f"{runs_dir}/{name}"
        else:
            require_file("--checkpoint", options["checkpoint"])
            options["checkpoint"] = in_runs_volume(options["checkpoint"])
    elif options["run"]:  # a run's name or a path, as `tandem sample` takes it
        from tandem.runs import resolve_path

        options["run"] = str(resolve_path(options["run"], default_runs_dir(), kind="dit"))
    return options


def sample(request: Request, options: dict, place: resources.Placement, where: str) -> int:
    run_path = Path(options["run"]) if options["run"] else Path(options["checkpoint"]).parent.parent
    result = call(functions.sample, where, place, options)
    if result["status"] == "error":
        raise UsageError(result["message"])
    written = copy_outputs(source(str(run_path.parent), where), run_path.name, request.target.outputs)
    print(f"outputs: {Path(request.target.outputs) / run_path.name}/ ({len(written)} files)")
    return 0


# -----------------------------------------------------------------------------
# check


def run_check(place: resources.Placement, where: str, folder: Path) -> int:
    path = fingerprint_of(place, where, folder)
    print(f"fingerprint: {path}")
    return 0


def fingerprint_of(place: resources.Placement, where: str, folder: Path) -> Path:
    """The target's fingerprint (`tandem check`), also saved as <folder>/<label>.json; returns that path."""
    label = f"modal-{place.gpu}" if where == "modal" else "local"
    runs_dir = functions.settings.runs_dir if where == "modal" else default_runs_dir()
    fingerprint = call(functions.check, where, place, label, runs_dir)
    path = folder / f"{label}.json"
    write_text_atomic(path, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n", parents=True)
    return path
