"""Training settings as dataclasses (nanoGPT style); the command-line flags are generated from them.

Every field carries its help text in `metadata["help"]`, so `tandem train dit --help` documents every
setting, and anything else that starts training (Docker, Modal) derives the very same flags from the
very same classes with `add_config_arguments` / `config_to_argv`.

The defaults are the tuned digits settings: `tandem train dit` with no flags is a short, useful run.
They live here and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from tandem.errors import UsageError

DEVICES = ("auto", "cuda", "mps", "cpu")  # or an indexed one such as cuda:1
LR_SCHEDULES = ("cosine", "linear", "constant")
# The sampler's and the loss's choices, named here so that the CLI parser needs no torch (tandem.flow uses them).
SOLVERS = ("euler", "heun")
TIMESTEP_SCHEDULES = ("logit-normal", "uniform")


def default_data_dir() -> str:
    return os.environ.get("TANDEM_DATA_DIR", "./data")  # the images set /data


def default_runs_dir() -> str:
    return os.environ.get("TANDEM_RUNS_DIR", "./runs")  # the images set /runs


def setting(default=dataclasses.MISSING, *, help: str, factory=dataclasses.MISSING, choices=None):
    """A config field with the help text (and optional fixed choices) its flag is generated from."""
    metadata = {"help": help, "choices": choices}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def default(name: str, value):
    """A setting of TrainConfig with this trainer's default: the help text (and choices) stay the shared one's."""
    return field(default=value, metadata=TrainConfig.__dataclass_fields__[name].metadata)


@dataclass
class TrainConfig:
    """Settings both trainers share."""

    # data
    dataset: str = setting(
        "digits",
        help="dataset: digits (offline, 8x8), mnist, fashion-mnist, cifar10, imagefolder (needs --folder "
        "and --image-size), synthetic (random noise, for benchmarks)",
    )
    data_dir: str = setting(
        help="where datasets are downloaded and cached (env TANDEM_DATA_DIR)", factory=default_data_dir
    )
    folder: str = setting("", help="imagefolder only: a folder of <class>/<image> files")
    image_size: int = setting(0, help="resize images to this many pixels square; 0 keeps the dataset's size")
    # run directory and checkpoints
    runs_dir: str = setting(help="where run directories are created (env TANDEM_RUNS_DIR)", factory=default_runs_dir)
    run_name: str = setting("", help="run directory name under --runs-dir; default <kind>-<timestamp>")
    resume: bool = setting(
        False,
        help="continue the --run-name run (else the newest run of this kind) from its latest complete checkpoint, "
        "with the settings its config.json records; flags given may only change its length, cadence, sampling "
        "and device (recorded in config.json). A run with no complete checkpoint starts over",
    )
    checkpoint_every: int = setting(500, help="write a checkpoint every this many steps (0: only at the end)")
    keep_checkpoints: int = setting(3, help="keep only this many most recent checkpoints")
    stop_after: int = setting(
        0, help="stop after this many steps of this invocation, with a checkpoint, as if interrupted (0: off)"
    )
    log_every: int = setting(
        0,
        help="log loss, lr and img/s to metrics.jsonl every this many steps (each log waits for the device); "
        "0: the device's default, 10 on CPU, 50 on CUDA",
    )
    # Not --log: torchrun reads the whole command line and refuses --log as a prefix of its --log-dir etc.
    loggers: str = setting(
        "auto",
        help="loggers besides metrics.jsonl, comma-separated: tensorboard (<run>/tensorboard/), wandb (key from "
        "WANDB_API_KEY or `wandb login`); auto: tensorboard when installed; none",
    )
    wandb_project: str = setting("tandem", help="the Weights & Biases project of --loggers wandb")
    # optimisation
    batch_size: int = setting(
        0,
        help="global batch size (split evenly across distributed ranks); 0: the device's default, 128 on CPU and "
        "1024 on CUDA (airbench's), halved until an epoch holds at least 10 batches",
    )
    lr: float = setting(1e-3, help="peak learning rate")
    weight_decay: float = setting(0.0, help="weight decay")
    warmup_steps: int = setting(100, help="linear learning-rate warmup steps")
    lr_schedule: str = setting("cosine", help="learning-rate decay after warmup", choices=LR_SCHEDULES)
    grad_clip: float = setting(1.0, help="clip the gradient norm to this value (0: no clipping)")
    # execution
    seed: int = setting(0, help="seed for initialisation, data order, augmentation and noise")
    device: str = setting("auto", help="auto (CUDA, then Apple MPS, then CPU), cuda, cuda:N, mps or cpu")
    deterministic: bool = setting(False, help="deterministic kernels (bitwise-reproducible on CPU, slower on GPU)")
    cpu_threads: int = setting(
        1,
        help="torch threads when training on the CPU: small models such as the digits defaults run fastest "
        "on one, and a shared machine stays usable; 0: one per core (torch's default)",
    )
    amp: bool = setting(True, help="bf16 autocast on CUDA (ignored on other devices)")
    compile: bool | None = setting(
        None,
        help="torch.compile the model, its backward included (needs a C compiler; the first steps wait for the "
        "compiler, and the time is logged as compile_s); default: on CUDA, off on other devices",
    )


@dataclass
class ClassifierTrainConfig(TrainConfig):
    """Airbench-style classifier training: SGD Nesterov, label smoothing, translate/flip augmentation."""

    arch: str = setting("airbench", help="classifier architecture: airbench or resnet18")
    width: int = setting(0, help="airbench base width (blocks use w, 4w, 4w); 0: the architecture's default")
    epochs: int = setting(15, help="passes over the training set")
    lr: float = default("lr", 0.05)
    momentum: float = setting(0.9, help="SGD Nesterov momentum")
    weight_decay: float = default("weight_decay", 5e-4)
    warmup_steps: int = default("warmup_steps", 50)
    lr_schedule: str = default("lr_schedule", "linear")
    grad_clip: float = default("grad_clip", 0.0)
    checkpoint_every: int = default("checkpoint_every", 200)
    label_smoothing: float = setting(0.2, help="label smoothing of the cross-entropy loss")
    translate: int = setting(1, help="random-translate augmentation by up to this many pixels")
    whiten: bool = setting(True, help="airbench only: initialise the stem to whiten 2x2 patches of the data")
    tta: bool = setting(True, help="average predictions over horizontal flips at evaluation, if the data flips")


@dataclass
class DiTTrainConfig(TrainConfig):
    """Class-conditional DiT trained by flow matching, sampled with an ODE solver from its EMA weights."""

    size: str = setting("tiny", help="DiT size: tiny, S, B, L or XL (depth, width and heads of a preset)")
    depth: int = setting(0, help="transformer blocks; 0: the --size preset's")
    width: int = setting(0, help="hidden size of the transformer, a multiple of 4 and of --heads; 0: the preset's")
    heads: int = setting(0, help="attention heads, dividing the width; 0: the preset's")
    patch_size: int = setting(4, help="patch size in pixels; must divide the image size")
    class_dropout: float = setting(0.1, help="probability of dropping the label (trains classifier-free guidance)")
    steps: int = setting(600, help="optimizer steps")
    batch_size: int = setting(
        0,
        help="global batch size (split evenly across distributed ranks); 0: the device's default, 64 on CPU and "
        "256 on CUDA (DiT's), halved until an epoch holds at least 10 batches",
    )
    lr: float = default("lr", 2e-3)
    warmup_steps: int = default("warmup_steps", 20)
    weight_decay: float = setting(0.0, help="AdamW weight decay")
    ema_decay: float = setting(0.99, help="decay of the exponential moving average of the weights")
    timestep_schedule: str = setting(
        "logit-normal", help="distribution of training timesteps", choices=TIMESTEP_SCHEDULES
    )
    checkpoint_every: int = default("checkpoint_every", 100)
    sample_every: int = setting(
        200,
        help="save a sample grid every this many steps (0: only at the end); each grid of the digits defaults "
        "costs about as much as 20 training steps",
    )
    samples_per_class: int = setting(8, help="columns of the sample grid (one row per class)")
    sample_steps: int = setting(16, help="ODE solver steps when sampling")
    solver: str = setting("heun", help="ODE solver for sampling", choices=SOLVERS)
    cfg_scale: float = setting(1.5, help="classifier-free guidance scale (1: no guidance)")
    classifier_checkpoint: str = setting(
        "", help="a classifier checkpoint of the same dataset: report sample accuracy and Frechet distance"
    )
    eval_samples: int = setting(0, help="samples generated for the final evaluation (0: the test-set size)")


CONFIGS: dict[str, type[TrainConfig]] = {"classifier": ClassifierTrainConfig, "dit": DiTTrainConfig}

# The settings whose default depends on where the run lands (0 / None in the dataclasses), chosen by
# resolve_for_device before config.json is written. On CUDA: batches that keep an H100 busy rather than
# launch-bound (DiT trains at 256, airbench94 at 1024), fewer logs (each waits for the GPU), and
# torch.compile. Every other device (CPU, MPS) gets the tuned digits settings.
DEVICE_DEFAULTS = {
    "cuda": {"batch_size": {"classifier": 1024, "dit": 256}, "log_every": 50, "compile": True},
    "other": {"batch_size": {"classifier": 128, "dit": 64}, "log_every": 10, "compile": False},
}
MIN_BATCHES_PER_EPOCH = 10  # a default batch is halved until the training set holds this many


def resolve_for_device(
    kind: str, config: TrainConfig, device_type: str, world_size: int = 1, train_images: int | None = None
) -> tuple[TrainConfig, dict]:
    """`config` with its device-chosen settings filled in for `device_type` (and the size of the training
    set, once known), and the settings so chosen."""
    row = DEVICE_DEFAULTS["cuda" if device_type == "cuda" else "other"]
    chosen = {}
    if config.log_every == 0:
        chosen["log_every"] = row["log_every"]
    if config.compile is None:
        chosen["compile"] = row["compile"]
    if config.batch_size == 0:
        batch = row["batch_size"][kind]
        while train_images is not None and batch > 1 and train_images < MIN_BATCHES_PER_EPOCH * batch:
            batch //= 2
        chosen["batch_size"] = max(world_size, batch - batch % world_size)  # splits evenly over the ranks
    return dataclasses.replace(config, **chosen), chosen


# -----------------------------------------------------------------------------
# flags <-> config


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def show_value(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def flag_text(name: str, value) -> str:
    """The flag that sets `name` to `value`, as a user types it: --lr 0.5, --compile, --no-amp."""
    if isinstance(value, bool):
        return flag_name(name) if value else "--no-" + name.replace("_", "-")
    return f"{flag_name(name)} {show_value(value)}"


def _field_types(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls)


GIVEN = "given_fields"  # the namespace attribute naming the fields set on the command line (or --config)
CONFIG_FILE = "config_file"


def _mark_given(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, GIVEN, getattr(namespace, GIVEN, frozenset()) | {dest})


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark_given(namespace, self.dest)


class _Bool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest)


def given_fields(args: argparse.Namespace) -> frozenset[str]:
    """The config fields whose flags were on the command line (the others hold their defaults)."""
    return getattr(args, GIVEN, frozenset())


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[TrainConfig]) -> None:
    """One flag per field: `batch_size` -> --batch-size; bools -> --flag / --no-flag; and --config FILE."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        dest=CONFIG_FILE,
        help="take the settings from a run's config.json or a TOML file (name = value); flags override them",
    )
    types = _field_types(cls)
    for f in fields(cls):
        kind = types[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f.metadata["help"]
        if kind in (bool, bool | None):
            parser.add_argument(flag_name(f.name), dest=f.name, action=_Bool, default=default, help=help_text)
        else:
            parser.add_argument(
                flag_name(f.name),
                dest=f.name,
                action=_Store,
                type=kind,
                default=default,
                choices=f.metadata.get("choices"),
                metavar=None if f.metadata.get("choices") else f.name.upper(),
                help=help_text,
            )


def config_from_args(cls: type[TrainConfig], args: argparse.Namespace):
    """The config the flags give: a --config file's settings first, the flags typed on top of them (the
    file's keys then count as given, see given_fields)."""
    values = {f.name: getattr(args, f.name) for f in fields(cls)}
    if path := getattr(args, CONFIG_FILE, None):
        kind = next(k for k, c in CONFIGS.items() if c is cls)
        from_file = {k: v for k, v in read_config_file(path, kind).items() if k not in given_fields(args)}
        values.update(from_file)
        setattr(args, GIVEN, given_fields(args) | set(from_file))
    return cls(**values)


def config_to_argv(config: TrainConfig) -> list[str]:
    """The flags that reproduce `config` exactly (the inverse of add_config_arguments + config_from_args)."""
    argv = []
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:  # the device's default: no flag says it
            continue
        if isinstance(value, bool):
            argv.append(flag_name(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            argv += [flag_name(f.name), repr(value) if isinstance(value, float) else str(value)]
    return argv


def config_from_dict(cls: type[TrainConfig], values: dict):
    """A config from a saved dict (config.json, a checkpoint); unknown keys are ignored."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    bool | None: "true or false",
    str: "a string",
}
# Settings of one invocation: a file that reruns or varies a run never carries them over.
NOT_FROM_FILE = ("run_name", "resume", "stop_after")


def read_config_file(path: str | Path, kind: str) -> dict:
    """The settings in a TOML file (name = value, names as in config.json or as flags) or in a run's
    config.json; UsageError naming the first key that is not a setting of `kind` or has the wrong type."""
    import json
    import tomllib

    path = Path(path)
    try:
        text = path.read_text()
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc}); pass a config.json or a .toml file") from None
    except ValueError as exc:
        raise UsageError(f"--config {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: holds {type(values).__name__}, not a table of settings")
    if isinstance(values.get("config"), dict) and "kind" in values:  # a run's config.json
        if values["kind"] != kind:
            raise UsageError(f"--config {path} is a {values['kind']} run; use it with tandem train {values['kind']}")
        values = {k: v for k, v in values["config"].items() if k not in NOT_FROM_FILE}
    types, out = _field_types(CONFIGS[kind]), {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in types:
            raise UsageError(
                f"--config {path}: unknown key {key!r}; the keys are tandem train {kind}'s flags without "
                "the dashes (batch_size = 64)"
            )
        kind_of = types[name]
        if kind_of is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
            raise UsageError(f"--config {path}: {key} = {value!r} is not {TYPE_WORDS[kind_of]}; fix the file")
        out[name] = value
    return out


# -----------------------------------------------------------------------------
# validation: everything here fails before anything is written


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def validate(config: TrainConfig) -> None:
    """Check every flag on its own; checks that need the data or a checkpoint happen in the trainers."""
    from tandem.data import DATASETS  # imported here: the CLI parser itself stays free of torch

    c = config
    types = _field_types(type(c))
    for f in fields(c):
        value = getattr(c, f.name)
        if types[f.name] is float:
            _require(math.isfinite(value), f"{flag_name(f.name)} must be a finite number, got {value}")
    _require(0 <= c.seed < 2**63, f"--seed must be between 0 and 2**63 - 1, got {c.seed}")
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
    from tandem.train.run import check_run_name

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
        _require(c.epochs > 0, f"--epochs must be positive, got {c.epochs}")
        _require(c.width >= 0, f"--width must be 0 (default) or positive, got {c.width}")
        _require(c.width == 0 or c.arch == "airbench", "--width only applies to --arch airbench; drop it")
        _require(c.momentum >= 0, f"--momentum must be >= 0, got {c.momentum}")
        _require(0 <= c.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {c.label_smoothing}")
        _require(c.translate >= 0, f"--translate must be >= 0, got {c.translate}")
    if isinstance(c, DiTTrainConfig):
        from tandem.models import DIT_SIZES

        _require(c.size in DIT_SIZES, f"--size {c.size!r} is unknown; pick one of: {', '.join(DIT_SIZES)}")
        _require(c.steps > 0, f"--steps must be positive, got {c.steps}")
        preset = DIT_SIZES[c.size]
        width, heads = c.width or preset.hidden_size, c.heads or preset.num_heads
        for name in ("depth", "width", "heads"):
            value = getattr(c, name)
            _require(value >= 0, f"--{name} must be 0 (the --size preset's) or positive, got {value}")
        _require(
            width % 4 == 0 and width % heads == 0,
            f"--width {width} must be a multiple of 4 and of --heads {heads}; pick a width such as {4 * heads * 8}",
        )
        _require(c.patch_size > 0, f"--patch-size must be positive, got {c.patch_size}")
        if c.image_size:  # else the dataset's size, checked by the trainer once the data is loaded
            check_patch_size(c.image_size, c.patch_size)
        _require(0 <= c.class_dropout < 1, f"--class-dropout must be in [0, 1), got {c.class_dropout}")
        _require(0 <= c.ema_decay <= 1, f"--ema-decay must be in [0, 1], got {c.ema_decay}")
        _require(c.sample_every >= 0, f"--sample-every must be >= 0, got {c.sample_every}")
        _require(c.samples_per_class > 0, f"--samples-per-class must be positive, got {c.samples_per_class}")
        _require(c.sample_steps > 0, f"--sample-steps must be positive, got {c.sample_steps}")
        _require(c.cfg_scale >= 0, f"--cfg-scale must be >= 0 (1: no guidance, 0: unconditional), got {c.cfg_scale}")
        _require(c.solver in SOLVERS, f"--solver must be one of {', '.join(SOLVERS)}")
        _require(
            c.timestep_schedule in TIMESTEP_SCHEDULES,
            f"--timestep-schedule must be one of {', '.join(TIMESTEP_SCHEDULES)}",
        )
        _require(c.eval_samples >= 0, f"--eval-samples must be >= 0, got {c.eval_samples}")
        _require(
            not c.classifier_checkpoint or os.path.isfile(c.classifier_checkpoint),
            f"--classifier-checkpoint {c.classifier_checkpoint}: no such file; pass a classifier "
            "checkpoint (runs/<run>/checkpoints/step_*.pt)",
        )


def check_patch_size(image_size: int, patch_size: int) -> None:
    """The DiT cuts images into patch_size x patch_size patches."""
    _require(
        image_size % patch_size == 0,
        f"--image-size {image_size} is not divisible by --patch-size {patch_size}; "
        "pick a patch size that divides the image size",
    )
