"""Every training setting checked on its own, before anything is read or written; the checks that need
the data or a checkpoint happen in the trainers."""

from __future__ import annotations

import math
import os
import re
import typing
from dataclasses import fields

from tandem.choices import DEVICES, LR_SCHEDULES, SOLVERS, TIMESTEP_SCHEDULES
from tandem.errors import UsageError
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig, TrainConfig
from tandem.train.flags import flag_name


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def validate(config: TrainConfig) -> None:
    """Check every flag on its own; checks that need the data or a checkpoint happen in the trainers."""
    from tandem.data import DATASETS  # imported here: the CLI parser itself stays free of torch

    c = config
    types = typing.get_type_hints(type(c))
    for f in fields(c):
        value = getattr(c, f.name)
        if types[f.name] is float:
            _require(math.isfinite(value), f"{flag_name(f.name)} must be a finite number, got {value}")
    check_seed(c.seed)
    _require(c.dataset in DATASETS, f"--dataset {c.dataset!r} is unknown; pick one of: {', '.join(DATASETS)}")
    _require(c.image_size >= 0, f"--image-size must be 0 (native) or positive, got {c.image_size}")
    _require(c.batch_size >= 0, f"--batch-size must be positive (0: the device's default), got {c.batch_size}")
    _require(c.lr > 0, f"--lr must be positive, got {c.lr}")
    _require(c.weight_decay >= 0, f"--weight-decay must be >= 0, got {c.weight_decay}")
    _require(c.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {c.warmup_steps}")
    _require(c.grad_clip >= 0, f"--grad-clip must be >= 0 (0 turns clipping off), got {c.grad_clip}")
    _require(c.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {c.checkpoint_every}")
    _require(c.keep_checkpoints >= 1, f"--keep-checkpoints must be at least 1, got {c.keep_checkpoints}")
    _require(c.stop_after >= 0, f"--stop-after must be >= 0 (0 turns it off), got {c.stop_after}")
    _require(c.cpu_threads >= 0, f"--cpu-threads must be 0 (one per core) or positive, got {c.cpu_threads}")
    _require(c.log_every >= 0, f"--log-every must be at least 1 (0: the device's default), got {c.log_every}")
    for name in ("steps", "epochs"):
        value = getattr(c, name)
        _require(value >= 0, f"{flag_name(name)} must be positive (0: no limit of that kind), got {value}")
    _require(
        c.steps or c.epochs,
        f"--steps {c.steps} and --epochs {c.epochs}: a run needs a length; give --steps N or --epochs N "
        "(both: whichever ends first)",
    )
    check_run_name(c.run_name)
    from tandem.train.loggers import check as check_loggers

    check_loggers(c.loggers)
    _require(c.lr_schedule in LR_SCHEDULES, f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}")
    device_kind = c.device.split(":")[0]
    _require(
        device_kind in DEVICES and (c.device.count(":") == 0 or device_kind == "cuda"),
        f"--device {c.device!r} is unknown; use auto, cuda, cuda:N, mps or cpu",
    )
    _require(
        c.dataset != "imagefolder" or (c.folder and c.image_size),
        "--dataset imagefolder needs --folder DIR and --image-size N",
    )
    if isinstance(c, ClassifierTrainConfig):
        from tandem.models import ARCHS

        _require(c.arch in ARCHS, f"--arch {c.arch!r} is unknown; pick one of: {', '.join(ARCHS)}")
        _require(c.width >= 0, f"--width must be 0 (default) or positive, got {c.width}")
        _require(c.width == 0 or c.arch == "airbench", "--width only applies to --arch airbench; drop it")
        _require(c.momentum >= 0, f"--momentum must be >= 0, got {c.momentum}")
        _require(0 <= c.val_fraction < 1, f"--val-fraction must be in [0, 1), got {c.val_fraction}")
        _require(0 <= c.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {c.label_smoothing}")
        _require(c.translate >= 0, f"--translate must be >= 0, got {c.translate}")
        check_translate(c)
    if isinstance(c, DiTTrainConfig):
        from tandem.models import DIT_SIZES

        _require(c.size in DIT_SIZES, f"--size {c.size!r} is unknown; pick one of: {', '.join(DIT_SIZES)}")
        preset = DIT_SIZES[c.size]
        hidden, heads = c.hidden_size or preset.hidden_size, c.heads or preset.num_heads
        for name in ("depth", "hidden_size", "heads"):
            value = getattr(c, name)
            _require(value >= 0, f"{flag_name(name)} must be 0 (the --size preset's) or positive, got {value}")
        _require(
            hidden % 4 == 0 and hidden % heads == 0,
            f"--hidden-size {hidden} must be a multiple of 4 and of --heads {heads}; pick one such as {4 * heads * 8}",
        )
        _require(c.patch_size > 0, f"--patch-size must be positive, got {c.patch_size}")
        if c.image_size:  # else the dataset's size, checked by the trainer once the data is loaded
            check_patch_size(c.image_size, c.patch_size)
        _require(0 <= c.class_dropout < 1, f"--class-dropout must be in [0, 1), got {c.class_dropout}")
        _require(0 <= c.ema_decay <= 1, f"--ema-decay must be in [0, 1], got {c.ema_decay}")
        _require(c.sample_every >= 0, f"--sample-every must be >= 0, got {c.sample_every}")
        _require(c.samples_per_class > 0, f"--samples-per-class must be positive, got {c.samples_per_class}")
        check_sample_steps(c.sample_steps)
        _require(c.cfg_scale >= 0, f"--cfg-scale must be >= 0 (1: no guidance, 0: unconditional), got {c.cfg_scale}")
        _require(c.solver in SOLVERS, f"--solver must be one of {', '.join(SOLVERS)}")
        _require(
            c.timestep_schedule in TIMESTEP_SCHEDULES,
            f"--timestep-schedule must be one of {', '.join(TIMESTEP_SCHEDULES)}",
        )
        _require(c.eval_samples >= 0, f"--eval-samples must be >= 0, got {c.eval_samples}")
        if c.classifier_checkpoint:  # a file, or a classifier run (its best checkpoint)
            from tandem.runs import resolve_checkpoint

            resolve_checkpoint(c.classifier_checkpoint, c.runs_dir, "classifier", "--classifier-checkpoint")


def check_patch_size(image_size: int, patch_size: int) -> None:
    """The DiT cuts images into patch_size x patch_size patches."""
    _require(
        image_size % patch_size == 0,
        f"--image-size {image_size} is not divisible by --patch-size {patch_size}; "
        "pick a patch size that divides the image size",
    )


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# The documented ranges of the settings that are bounded by a number rather than by the device's memory.
RUN_NAME_MAX = 100  # characters: well inside a file name's 255 bytes, with room for what is named after it
SEED_MAX = 2**63 - 1  # torch's generators take a signed 64-bit seed
SAMPLE_STEPS_MAX = 1000  # ODE solver steps: grids stop improving long before (16 is the default)


def check_run_name(run_name: str) -> None:
    """A run name is one directory name: it can never point outside --runs-dir."""
    if run_name and not RUN_NAME.fullmatch(run_name):
        raise UsageError(
            f"--run-name {run_name!r} is not a plain directory name; use letters, digits and . _ + - "
            "(starting with a letter or digit), and --runs-dir for where it goes"
        )
    _require(
        len(run_name) <= RUN_NAME_MAX,
        f"--run-name is {len(run_name)} characters long; use at most {RUN_NAME_MAX}",
    )


def check_seed(seed: int) -> None:
    _require(0 <= seed <= SEED_MAX, f"--seed must be between 0 and 2**63 - 1, got {seed}")


def check_sample_steps(steps: int) -> None:
    _require(
        1 <= steps <= SAMPLE_STEPS_MAX,
        f"--sample-steps must be between 1 and {SAMPLE_STEPS_MAX}, got {steps}",
    )


def cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers narrow), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_cpu_threads(threads: int) -> None:
    """Checked on the machine that runs (not where a remote run is launched from): more threads than
    cores only slows torch down, and far more fails inside it."""
    _require(
        0 <= threads <= cores(),
        f"--cpu-threads must be between 0 (one per core) and the {cores()} cores here, got {threads}",
    )


def check_translate(c: ClassifierTrainConfig) -> None:
    """Translation pads by reflection, which needs fewer pixels of padding than the image has."""
    from tandem.data.datasets import IMAGE_SHAPES

    size = c.image_size or IMAGE_SHAPES.get(c.dataset, (0, 0, 0))[-1]
    source = f"--image-size {c.image_size}" if c.image_size else f"the {size}x{size} images of {c.dataset}"
    _require(
        not size or c.translate < size,
        f"--translate {c.translate} must be smaller than the image size ({source}); pass --translate {size - 1} or less",
    )
