"""`tandem train classifier|dit` and `tandem sample`.

The train flags are generated from the config dataclasses (tandem.train.config); each command turns its
flags back into a config and calls run_training, exactly as the Docker image and the Modal app do.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from pathlib import Path

from tandem.choices import SOLVERS
from tandem.cli import DefaultsHelpFormatter
from tandem.errors import UsageError
from tandem.files import check_writable
from tandem.runs import KINDS
from tandem.train.config import CONFIGS, TrainConfig, default_runs_dir
from tandem.train.flags import FLAG, add_config_arguments, config_from_args, sources
from tandem.train.launch import add_launch_arguments, launch_from_args
from tandem.train.validate import SAMPLE_STEPS_MAX, check_cpu_threads, check_sample_steps, check_seed

RUN_REF = "run_ref"  # the namespace attribute of `tandem train --run`


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the image classifier or the class-conditional DiT",
        description="Train a model. The same function runs locally, in Docker and on Modal; several GPUs: "
        "--gpus G; several machines: the same command on each with --nodes N --node-rank R --master-addr HOST.",
    )
    kinds = train.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, cls in CONFIGS.items():
        parser = kinds.add_parser(
            kind,
            help=cls.__doc__.splitlines()[0],
            description=cls.__doc__,
            formatter_class=DefaultsHelpFormatter,
        )
        add_config_arguments(parser, cls)
        add_launch_arguments(parser)
        parser.add_argument(
            "--run",
            metavar="RUN",
            dest=RUN_REF,
            help=f"continue this {kind} run (as --resume --run-name NAME): its name, a unique prefix of it, or "
            f"latest (the {kind} run written most recently)",
        )
        parser.set_defaults(func=functools.partial(train_command, kind))

    sample = subparsers.add_parser(
        "sample",
        help="write a sample grid (one row per class) from a DiT checkpoint",
        description="Sample a class-conditional grid from a DiT checkpoint (its EMA weights by default). "
        "A grid never replaces a file: the default name carries step, solver, steps, cfg scale, seed, weights "
        "and columns, and settings that already made a grid point at it (another --seed draws new noise; "
        "--force draws the same again as a new file); an existing --out is refused.",
        formatter_class=DefaultsHelpFormatter,
    )
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a DiT checkpoint file (or a run directory, as --run)")
    source.add_argument(
        "--run",
        metavar="RUN",
        help="a DiT run, its latest valid checkpoint: the run's name, a unique prefix of it, latest (the DiT run "
        "written most recently) or its directory",
    )
    sample.add_argument(
        "--sample-steps",
        type=int,
        metavar="N",
        help=f"ODE solver steps, 1 to {SAMPLE_STEPS_MAX} (default: the run's --sample-steps)",
    )
    sample.add_argument("--solver", choices=SOLVERS, help="ODE solver (default: the run's --solver)")
    sample.add_argument(
        "--cfg-scale", type=float, metavar="S", help="classifier-free guidance scale, >= 0 (default: the run's)"
    )
    sample.add_argument("--samples-per-class", type=int, default=8, metavar="N", help="grid columns")
    sample.add_argument("--seed", type=int, default=0, help="seed of the sampling noise, 0 to 2**63 - 1")
    sample.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True, help="use the EMA weights")
    sample.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    sample.add_argument(
        "--cpu-threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads when sampling on the CPU, as for training: at most the cores (0: one per core)",
    )
    sample.add_argument(
        "--out",
        metavar="PNG",
        help="output file, new, in a folder that exists (default: a new file in <run>/samples/ named after step, "
        "solver, steps, cfg scale, seed, weights and columns; samples/latest.png stays training's newest grid)",
    )
    sample.add_argument(
        "--force",
        action="store_true",
        help="draw a grid whose settings already made one, as a new file (-2, -3, ...): the same noise again",
    )
    sample.set_defaults(func=sample_command)

    runs = subparsers.add_parser(
        "runs",
        help="list the runs, the most recently written first",
        description="List the runs of the runs directory, the most recently written first: kind, status, step "
        "of the total, key metric, age and size. Name one elsewhere (--run) by its name, a unique prefix of it, "
        "latest or latest:<kind>.",
        formatter_class=DefaultsHelpFormatter,
    )
    runs.add_argument("--runs-dir", default=None, help="the runs directory (default: env TANDEM_RUNS_DIR, else ./runs)")
    runs.add_argument("--kind", choices=KINDS, help="only runs of this kind")
    runs.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    runs.set_defaults(func=runs_command)


def train_command(kind: str, args: argparse.Namespace) -> int:
    from tandem.runs import RunsFolder, resolve_checkpoint
    from tandem.train import run_training
    from tandem.train.checkpoint import CheckpointWriteError
    from tandem.train.run import TrainingDiverged

    config = config_from_args(CONFIGS[kind], args)
    given = sources(args)  # the settings given, and where each came from
    if ref := getattr(args, RUN_REF, None):
        config, given = continued(kind, config, given, ref, RunsFolder(config.runs_dir))
    if ref := getattr(config, "classifier_checkpoint", ""):  # the file a run names, recorded as the file
        found = resolve_checkpoint(ref, config.runs_dir, "classifier", "--classifier-checkpoint")
        config = dataclasses.replace(config, classifier_checkpoint=str(found))
    launch = launch_from_args(args)
    if launch.world_size > 1:
        start_ranks(kind, config, given, launch)  # does not return
    try:  # a continued run trains its recorded config, with the flags given where they may change
        run_training(kind, config, given)
    except (TrainingDiverged, CheckpointWriteError) as exc:
        print(f"tandem train {kind}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the run directory itself cannot be written: say which file and why
        print(
            f"tandem train {kind}: cannot write {exc.filename or config.runs_dir} ({exc.strerror}); "
            "free space or fix permissions on the runs directory, then rerun with --resume",
            file=sys.stderr,
        )
        return 1
    return 0


def start_ranks(kind: str, config, given: dict[str, str], launch) -> None:
    """This process becomes torchrun, which starts the ranks of this node, each training `config` with
    the flags given (checked here first: a bad flag stops before any process starts)."""
    import os

    from tandem.train.flags import config_to_argv, sources_argv
    from tandem.train.launch import started_by_torchrun
    from tandem.train.validate import validate

    if started_by_torchrun():
        raise UsageError("torchrun started this process already; drop --gpus / --nodes (torchrun's own flags count)")
    validate(config)
    command = launch.torchrun(["-m", "tandem", "train", kind, *config_to_argv(config, given), *sources_argv(given)])
    sys.stdout.flush()
    os.execv(command[0], command)


def continued(kind: str, config: TrainConfig, given: dict, ref: str, store) -> tuple[TrainConfig, dict[str, str]]:
    """`--run REF`: the config continues the run REF names in `store` (as --resume --run-name NAME); the
    settings given (with where each came from) grow by those two."""
    from tandem.runs import resolve

    if "run_name" in given and config.run_name:
        raise UsageError(f"--run {ref} names the run to continue; drop --run-name {config.run_name}")
    name = resolve(ref, store, kind)
    return dataclasses.replace(config, resume=True, run_name=name), {**given, "resume": FLAG, "run_name": FLAG}


def runs_command(args: argparse.Namespace) -> int:
    import json
    import time

    from tandem.runs import RunsFolder, list_runs, table

    folder = RunsFolder(args.runs_dir or default_runs_dir())
    runs, now = list_runs(folder, args.kind), time.time()
    if args.json:
        print(json.dumps([r.as_json(now) for r in runs], indent=2))
    elif not runs:
        print(f"no {args.kind + ' ' if args.kind else ''}runs in {folder.describe()} yet")
    else:
        print(table(runs, now))
    return 0


def sample_command(args: argparse.Namespace) -> int:
    import torch

    from tandem.models import DiTConfig, build_dit
    from tandem.models.ema import EMA
    from tandem.runs import resolve_path
    from tandem.train import checkpoint, memory, samples
    from tandem.train.device import choose_device

    if args.samples_per_class < 1:
        raise UsageError(f"--samples-per-class must be positive, got {args.samples_per_class}")
    if args.sample_steps is not None:
        check_sample_steps(args.sample_steps)
    if args.cfg_scale is not None and not (math.isfinite(args.cfg_scale) and args.cfg_scale >= 0):
        raise UsageError(
            f"--cfg-scale must be a finite number >= 0 (1: no guidance, 0: unconditional), got {args.cfg_scale}"
        )
    check_seed(args.seed)
    check_cpu_threads(args.cpu_threads)
    if args.out:
        check_out(Path(args.out))
        if Path(args.out).exists():
            raise UsageError(f"--out {args.out} already exists; tandem never replaces a grid: pass a new --out")
    if args.checkpoint and not Path(args.checkpoint).is_dir():
        path = Path(args.checkpoint)
        state = checkpoint.load_or_fail(path, "--checkpoint")
    else:  # a run, named or as its directory: its latest valid checkpoint
        flag, ref = ("--run", args.run) if args.run else ("--checkpoint", args.checkpoint)
        run = resolve_path(ref, default_runs_dir(), "dit", flag)
        found = checkpoint.CheckpointDir(run / "checkpoints").latest_valid()
        if found is None:
            raise UsageError(f"{flag} {ref}: no usable checkpoint in {run}/checkpoints; pass a DiT run")
        path, state = found
    if state.get("kind") != "dit":
        raise UsageError(f"{path} is a {state.get('kind')} checkpoint; tandem sample needs a DiT checkpoint")
    trained, step, per_class = state["config"], state["step"], args.samples_per_class
    steps = args.sample_steps or trained["sample_steps"]
    solver = args.solver or trained["solver"]
    cfg_scale = trained["cfg_scale"] if args.cfg_scale is None else args.cfg_scale
    run_dir = path.parent.parent
    samples_dir = run_dir / "samples"
    name = samples.sample_name(step, solver, steps, cfg_scale, args.seed, args.ema, per_class)
    if not args.out and not args.force and (samples_dir / name).exists():  # the same settings, the same grid
        print(
            f"{samples_dir / name} has these settings already; open it, or pass another --seed for new noise "
            "(--force draws this grid again as a new file)"
        )
        return 0
    if not args.out:  # a read-only run is named now, before the sampling
        check_writable(samples_dir / name, parents=True)

    device, why = choose_device(args.device)
    if device.type == "cpu" and args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)  # a small DiT samples fastest on one thread, as it trains
    model_config = DiTConfig(**state["model_config"])
    model = build_dit(model_config)
    if args.ema:
        ema = EMA(model, 0.0)
        ema.load_state_dict(state["ema"])
        model = ema.module
    else:
        model.load_state_dict(state["model"])
    model = model.to(device)

    png = samples.grid_layout(model_config.num_classes, per_class, model_config.image_size).size
    shape = (model_config.in_channels, model_config.image_size, model_config.image_size)
    needed = memory.grid_bytes(model_config.num_classes * per_class, shape, png[0] * png[1])
    memory.require_fits(needed, device, f"--samples-per-class {per_class}", "pass a smaller --samples-per-class")

    print(f"device: {device} ({why})")
    labels = samples.grid_labels(model_config.num_classes, per_class, device)
    shape = (model_config.in_channels, model_config.image_size, model_config.image_size)
    with torch.no_grad():
        images = samples.class_samples(
            model, labels, shape, steps=steps, solver=solver, cfg_scale=cfg_scale, seed=args.seed
        )
    grid = dict(
        class_names=state.get("class_names", ()),
        caption=samples.caption(run_dir.name, step, solver, steps, cfg_scale, args.seed, args.ema),
        replace=False,
    )
    if args.out:
        try:
            out = samples.save_grid(images, per_class, args.out, parents=False, **grid)
        except FileExistsError:
            raise UsageError(f"--out {args.out} appeared while sampling; pass a new --out") from None
    else:
        for candidate in samples.free_names(samples_dir / name):
            try:
                out = samples.save_grid(images, per_class, candidate, **grid)
                break
            except FileExistsError:
                continue
    print(
        f"wrote {out}  ({model_config.num_classes} classes x {per_class}, {solver}, {steps} steps, "
        f"cfg {cfg_scale:g}, seed {args.seed}, {'EMA' if args.ema else 'raw'} weights of step {step})"
    )
    return 0


def check_out(out: Path) -> None:
    """--out names a new or existing PNG file: never a directory, never one of a run's own files."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; pass a file name such as {out / 'grid.png'}")
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the grid is a PNG; pass a file name ending in .png")
    check_writable(out)  # in a folder that exists and takes files: none is made for it
