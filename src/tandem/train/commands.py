"""`tandem train classifier|dit` and `tandem sample`.

The train flags are generated from the config dataclasses (tandem.train.config); each command turns its
flags back into a config and calls run_training, exactly as the Docker image and the Modal app do.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

from tandem.errors import UsageError
from tandem.train.config import (
    CONFIGS,
    SOLVERS,
    add_config_arguments,
    config_from_args,
    given_fields,
)


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the image classifier or the class-conditional DiT",
        description="Train a model. The same function runs locally, in Docker and on Modal; "
        "multi-GPU: torchrun --nproc-per-node N -m tandem train ...",
    )
    kinds = train.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, cls in CONFIGS.items():
        parser = kinds.add_parser(
            kind,
            help=cls.__doc__.splitlines()[0],
            description=cls.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        add_config_arguments(parser, cls)
        parser.set_defaults(func=functools.partial(train_command, kind))

    sample = subparsers.add_parser(
        "sample",
        help="write a sample grid (one row per class) from a DiT checkpoint",
        description="Sample a class-conditional grid from a DiT checkpoint (its EMA weights by default).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a DiT checkpoint file")
    source.add_argument("--run", metavar="DIR", help="a DiT run directory: its latest valid checkpoint")
    sample.add_argument("--steps", type=int, help="ODE solver steps (default: the run's --sample-steps)")
    sample.add_argument("--solver", choices=SOLVERS, help="ODE solver (default: the run's)")
    sample.add_argument("--cfg-scale", type=float, help="classifier-free guidance scale (default: the run's)")
    sample.add_argument("--per-class", type=int, default=8, help="samples per class (grid columns)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    sample.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True, help="use the EMA weights")
    sample.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    sample.add_argument("--out", metavar="PNG", help="output file (default: <run>/samples/sample_step_<N>.png)")
    sample.set_defaults(func=sample_command)


def train_command(kind: str, args: argparse.Namespace) -> int:
    from tandem.train import run_training
    from tandem.train.attempt import plan_attempt
    from tandem.train.checkpoint import CheckpointWriteError
    from tandem.train.run import TrainingDiverged

    config = config_from_args(CONFIGS[kind], args)
    # A continued run trains its recorded config; refusals come here, before any data is loaded.
    config = plan_attempt(kind, config, given_fields(args), report=lambda line: None).config
    try:
        run_training(kind, config)
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


def sample_command(args: argparse.Namespace) -> int:
    import torch

    from tandem.flow import EMA
    from tandem.models import DiTConfig, build_dit
    from tandem.train import checkpoint, memory
    from tandem.train.device import choose_device
    from tandem.train.samples import class_samples, grid_labels, grid_size, save_grid

    if args.per_class < 1:
        raise UsageError(f"--per-class must be positive, got {args.per_class}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be positive, got {args.steps}")
    if args.cfg_scale is not None and not math.isfinite(args.cfg_scale):
        raise UsageError(f"--cfg-scale must be a finite number, got {args.cfg_scale}")
    if args.out:
        check_out(Path(args.out))
    if args.checkpoint:
        path = Path(args.checkpoint)
        state = checkpoint.load_or_fail(path, "--checkpoint")
    else:
        found = checkpoint.CheckpointDir(Path(args.run) / "checkpoints").latest_valid()
        if found is None:
            raise UsageError(f"--run {args.run}: no usable checkpoint in {args.run}/checkpoints; pass a DiT run")
        path, state = found
    if state.get("kind") != "dit":
        raise UsageError(f"{path} is a {state.get('kind')} checkpoint; tandem sample needs a DiT checkpoint")
    device, why = choose_device(args.device)

    model_config = DiTConfig(**state["model_config"])
    model = build_dit(model_config)
    if args.ema:
        ema = EMA(model, 0.0)
        ema.load_state_dict(state["ema"])
        model = ema.module
    else:
        model.load_state_dict(state["model"])
    model = model.to(device)

    trained = state["config"]
    steps = args.steps or trained["sample_steps"]
    solver = args.solver or trained["solver"]
    cfg_scale = trained["cfg_scale"] if args.cfg_scale is None else args.cfg_scale
    out = Path(args.out) if args.out else path.parent.parent / "samples" / f"sample_step_{state['step']:07d}.png"

    png = grid_size(model_config.num_classes, args.per_class, model_config.image_size)
    shape = (model_config.in_channels, model_config.image_size, model_config.image_size)
    needed = memory.grid_bytes(model_config.num_classes * args.per_class, shape, png[0] * png[1])
    memory.require_fits(needed, device, f"--per-class {args.per_class}", "pass a smaller --per-class")

    print(f"device: {device} ({why})")
    labels = grid_labels(model_config.num_classes, args.per_class, device)
    shape = (model_config.in_channels, model_config.image_size, model_config.image_size)
    with torch.no_grad():
        images = class_samples(model, labels, shape, steps=steps, solver=solver, cfg_scale=cfg_scale, seed=args.seed)
    save_grid(images, args.per_class, out)
    print(
        f"wrote {out}  ({model_config.num_classes} classes x {args.per_class}, {solver}, {steps} steps, "
        f"cfg {cfg_scale}, {'EMA' if args.ema else 'raw'} weights of step {state['step']})"
    )
    return 0


def check_out(out: Path) -> None:
    """--out names a new or existing PNG file: never a directory, never one of a run's own files."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; pass a file name such as {out / 'grid.png'}")
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: the grid is a PNG; pass a file name ending in .png")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is not a directory; pass a path in a directory")
