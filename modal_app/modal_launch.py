"""The entrypoint's work on this machine: parse the flags, pick the target (Modal, or here), call the
Function there, and copy the run's outputs into --outputs/<run>/.

`target` is the app module (modal_app/train.py): under `modal run` it is imported as `train`, under
`python modal_app/train.py` it is `__main__`, so it is handed in rather than imported.
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
import modal_login
from modal_flags import MAX_GPUS, MAX_TIMEOUT, build_parser, subparser
from modal_outputs import DirFiles, VolumeFiles, copy_outputs

from tandem.cli import build_parser as tandem_parser
from tandem.errors import UsageError
from tandem.train.config import CONFIGS, config_from_args, default_runs_dir, validate

PROG = "modal_app/train.py"
DEFAULT_COMMAND = "dit"


def launch(target, argv: list[str], app_running: bool) -> int:
    s = target.settings
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_COMMAND, *argv]  # `modal run modal_app/train.py [--steps N]` trains the DiT
    args = build_parser(s.modal_gpu, target.TRAIN_TIMEOUT, target.SHORT_TIMEOUT).parse_args(argv)
    where, why = choose_target(args.local, app_running)
    gpus = f"{args.gpus} x {args.gpu}" if args.gpus > 1 else args.gpu
    print(f"target: {'Modal, ' + gpus if where == 'modal' else 'this machine'} ({why})")
    try:
        check_target_flags(args)
        with modal_session(target, where, app_running):
            if args.command in CONFIGS:
                return train(target, args, where)
            if args.command == "sample":
                return sample(target, args, where)
            path = run_check(target, args.gpu, where, args.timeout, Path(args.outputs) / "fingerprints")
            print(f"fingerprint: {path}")
            return 0
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code


def choose_target(local: bool, app_running: bool) -> tuple[str, str]:
    """("modal" | "local", why)."""
    if local:
        return "local", "--local was given"
    if app_running:
        return "modal", "started by `modal run`"
    if source := modal_login.credentials_source():
        return "modal", f"Modal credentials found: {source}"
    return "local", f"no Modal credentials; to use Modal, {modal_login.LOGIN}"


def check_target_flags(args) -> None:
    if not 1 <= args.gpus <= MAX_GPUS:
        raise UsageError(f"--gpus must be between 1 and {MAX_GPUS}, got {args.gpus}")
    if not 1 <= args.timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be between 1 and {MAX_TIMEOUT} seconds, got {args.timeout}")


@contextmanager
def modal_session(target, where: str, app_running: bool):
    """An ephemeral run of the app (streaming its logs here) when calling Modal from plain Python."""
    if where == "local" or app_running:
        yield
        return
    with modal.enable_output(), target.app.run():
        yield


def on_target(function, where: str, gpu: str, gpus: int, timeout: int):
    """`.remote` of the Function with this call's GPU and timeout, or `.local`: its body, run here."""
    if where == "modal":
        return with_resources(function, gpu, gpus, timeout).remote
    return function.local


def with_resources(function, gpu: str, gpus: int, timeout: int):
    """The Function on `gpus` GPUs of type `gpu` (Modal's "TYPE:COUNT"), stopped after `timeout` seconds."""
    return function.with_options(gpu=gpu if gpus == 1 else f"{gpu}:{gpus}", timeout=timeout)


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


# -----------------------------------------------------------------------------
# train


def training_config(target, args, where: str):
    """The config from the flags, with the Volumes' paths on Modal and a run name fixed here, so a retried
    or restarted call finds the same run."""
    kind = args.command
    config = config_from_args(CONFIGS[kind], args)
    if where == "modal":
        config = dataclasses.replace(
            config,
            data_dir=target.settings.data_dir,
            runs_dir=target.settings.runs_dir,
            classifier_checkpoint=in_runs_volume(target, config.classifier_checkpoint),
        )
    if not config.run_name and not config.resume:
        config = dataclasses.replace(config, run_name=f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    # Every flag is checked before a container starts; a checkpoint named for Modal lives in its Volume.
    validate(dataclasses.replace(config, classifier_checkpoint="") if where == "modal" else config)
    return config


def in_runs_volume(target, path: str) -> str:
    """A checkpoint path given for Modal: relative to the runs Volume (absolute ones are taken as they are)."""
    if not path or path.startswith("/"):
        return path
    return f"{target.settings.runs_dir}/{PurePosixPath(path).as_posix()}"


def train(target, args, where: str) -> int:
    kind = args.command
    config = training_config(target, args, where)
    call = on_target(target.TRAIN_FUNCTIONS[kind], where, args.gpu, args.gpus, args.timeout)
    if where == "modal":
        print(f"run: {config.run_name or 'the newest ' + kind + ' run'} in Volume {target.RUNS_VOLUME}")
    try:
        with quiet_local_volumes(where):
            result = call(dataclasses.asdict(config), args.gpus)
    except target.RunInterrupted as exc:  # only here: on Modal the call is retried
        print(f"{exc}: run the same command with --run-name {config.run_name} to continue", file=sys.stderr)
        return 1
    if result["status"] == "error":
        raise UsageError(result["message"])
    run = Path(result["run_dir"]).name
    written = copy_outputs(source(target, config.runs_dir, where), run, args.outputs)
    print(f"{kind} {result['status']} at step {result.get('step', '?')}{summary(result)}")
    print(f"outputs: {Path(args.outputs) / run}/ ({len(written)} files)")
    if where == "modal":
        print(
            f"checkpoints: Volume {target.RUNS_VOLUME}, {run}/checkpoints/ (modal volume get {target.RUNS_VOLUME} ...)"
        )
    return 1 if result["status"] == "diverged" else 0


def summary(result: dict) -> str:
    if result["status"] == "diverged":
        return ": " + result["message"]
    metrics = result.get("metrics") or {}
    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    return f": {text}" if text else ""


def source(target, runs_dir: str, where: str):
    return VolumeFiles(target.runs_volume) if where == "modal" else DirFiles(runs_dir)


# -----------------------------------------------------------------------------
# sample


def sample(target, args, where: str) -> int:
    """`tandem sample` with these flags; on Modal, --run is a run of the runs Volume and --checkpoint a path
    inside it."""
    options = {a.dest: getattr(args, a.dest) for a in subparser(tandem_parser(), "sample")._actions if a.dest != "help"}
    runs_dir = target.settings.runs_dir if where == "modal" else default_runs_dir()
    if where == "modal":
        if options["out"]:
            raise UsageError("--out writes on this machine only; on Modal the grid lands in the run's samples/")
        if options["run"]:
            options["run"] = f"{runs_dir}/{PurePosixPath(options['run']).name}"
        else:
            options["checkpoint"] = in_runs_volume(target, options["checkpoint"])
    run_path = Path(options["run"]) if options["run"] else Path(options["checkpoint"]).parent.parent
    call = on_target(target.sample, where, args.gpu, 1, args.timeout)
    with quiet_local_volumes(where):
        result = call(options)
    if result["status"] == "error":
        raise UsageError(result["message"])
    written = copy_outputs(source(target, str(run_path.parent), where), run_path.name, args.outputs)
    print(f"outputs: {Path(args.outputs) / run_path.name}/ ({len(written)} files)")
    return 0


# -----------------------------------------------------------------------------
# check


def run_check(target, gpu: str, where: str, timeout: int, folder: Path) -> Path:
    """The target's fingerprint (`tandem check`), also saved as <folder>/<label>.json; returns that path."""
    label = f"modal-{gpu}" if where == "modal" else "local"
    runs_dir = target.settings.runs_dir if where == "modal" else default_runs_dir()
    with quiet_local_volumes(where):
        fingerprint = on_target(target.check, where, gpu, 1, timeout)(label, runs_dir)
    path = folder / f"{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return path
