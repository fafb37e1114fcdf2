"""Training settings as dataclasses (nanoGPT style), and the defaults left to the device.

Every field carries its help text in `metadata["help"]`, so `tandem train dit --help` documents every
setting; tandem.train.flags makes the command-line flags from these classes (every target derives the
very same flags) and tandem.train.validate checks the values.

The defaults are the tuned digits settings: `tandem train dit` with no flags is a short, useful run.
They live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields

from tandem.choices import LR_SCHEDULES, SOLVERS, TIMESTEP_SCHEDULES


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
    run_name: str = setting(
        "", help="run directory name under --runs-dir, at most 100 characters; default <kind>-<timestamp>"
    )
    resume: bool = setting(
        False,
        help="continue the --run-name run (else the newest run of this kind) from its latest complete checkpoint, "
        "with the settings its config.json records; flags given may only change its length, cadence, sampling "
        "and device (recorded in config.json). A run with no complete checkpoint starts over",
    )
    # length: whichever of the two is reached first (0: no limit of that kind); a command that gives one
    # of them alone sets the other to 0
    steps: int = setting(0, help="optimizer steps to train (0: no step limit; --epochs sets the length)")
    epochs: int = setting(0, help="passes over the training set to train (0: no epoch limit; --steps sets the length)")
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
        help="loggers added to metrics.jsonl and TensorBoard (event files in the run directory; on whenever "
        "installed), comma-separated: wandb (key from WANDB_API_KEY or `wandb login`); none: no TensorBoard "
        "(none,wandb: W&B alone)",
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
    seed: int = setting(0, help="seed for initialisation, data order, augmentation and noise: 0 to 2**63 - 1")
    device: str = setting("auto", help="auto (CUDA, then Apple MPS, then CPU), cuda, cuda:N, mps or cpu")
    deterministic: bool = setting(False, help="deterministic kernels (bitwise-reproducible on CPU, slower on GPU)")
    cpu_threads: int = setting(
        1,
        help="torch threads when training on the CPU, at most the cores: small models such as the digits "
        "defaults run fastest on one, and a shared machine stays usable; 0: one per core (torch's default)",
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
    epochs: int = default("epochs", 15)
    lr: float = default("lr", 0.05)
    momentum: float = setting(0.9, help="SGD Nesterov momentum")
    weight_decay: float = default("weight_decay", 5e-4)
    warmup_steps: int = default("warmup_steps", 50)
    lr_schedule: str = default("lr_schedule", "linear")
    grad_clip: float = default("grad_clip", 0.0)
    checkpoint_every: int = default("checkpoint_every", 200)
    val_fraction: float = setting(
        0.1,
        help="fraction of each class of the training images held out for validation (the same for every run "
        "of a dataset): scored every epoch, it keeps the best checkpoint (checkpoints/best.pt), whose weights "
        "score the test set once at the end; 0: no validation, the final weights are scored",
    )
    label_smoothing: float = setting(0.2, help="label smoothing of the cross-entropy loss")
    translate: int = setting(
        1, help="random-translate augmentation by up to this many pixels, fewer than the image size"
    )
    whiten: bool = setting(True, help="airbench only: initialise the stem to whiten 2x2 patches of the data")
    tta: bool = setting(
        True,
        help="test-time augmentation: average each evaluation's predictions over the image's one-pixel "
        "translations (with --translate) and its mirror image (if the data flips)",
    )


@dataclass
class DiTTrainConfig(TrainConfig):
    """Class-conditional DiT trained by flow matching, sampled with an ODE solver from its EMA weights."""

    size: str = setting("tiny", help="DiT size: tiny, S, B, L or XL (depth, hidden size and heads of a preset)")
    depth: int = setting(
        0,
        help="transformer blocks; 0: the --size preset's. The model, its training state and a batch's "
        "activations must fit the device's memory (estimated, and refused before anything is written)",
    )
    hidden_size: int = setting(
        0, help="hidden size of the transformer, a multiple of 4 and of --heads; 0: the preset's"
    )
    heads: int = setting(0, help="attention heads, dividing the hidden size; 0: the preset's")
    patch_size: int = setting(4, help="patch size in pixels; must divide the image size")
    class_dropout: float = setting(0.1, help="probability of dropping the label (trains classifier-free guidance)")
    steps: int = default("steps", 600)
    batch_size: int = setting(
        0,
        help="global batch size (split evenly across distributed ranks); 0: the device's default, 64 on CPU and "
        "256 on CUDA (DiT's), halved until an epoch holds at least 10 batches",
    )
    lr: float = default("lr", 3e-3)
    warmup_steps: int = default("warmup_steps", 20)
    weight_decay: float = default("weight_decay", 0.0)  # AdamW's
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
    sample_steps: int = setting(16, help="ODE solver steps when sampling, 1 to 1000")
    solver: str = setting("heun", help="ODE solver for sampling", choices=SOLVERS)
    cfg_scale: float = setting(1.6, help="classifier-free guidance scale (1: no guidance)")
    classifier_checkpoint: str = setting(
        "",
        help="a classifier of the same dataset, to report sample accuracy and Frechet distance: a checkpoint "
        "file, or a classifier run (its directory, name, a unique prefix, latest) for its best checkpoint",
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


# Settings that were renamed: a run's record from before keeps meaning what it meant.
RENAMED = {"dit": {"width": "hidden_size"}, "classifier": {}}


def upgrade_settings(kind: str, values: dict) -> dict:
    """A run's recorded settings under today's names."""
    renamed = RENAMED[kind]
    return {renamed.get(k, k): v for k, v in values.items() if renamed.get(k, k) not in values or k not in renamed}


def config_from_dict(cls: type[TrainConfig], values: dict):
    """A config from a saved dict (config.json, a checkpoint); unknown keys are ignored."""
    kind = next(k for k, c in CONFIGS.items() if c is cls)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in upgrade_settings(kind, values).items() if k in names})


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The steps a run trains in all: --steps or --epochs, whichever ends first (0 is no limit)."""
    limits = [n for n in (config.steps, config.epochs * steps_per_epoch) if n]
    return min(limits) if limits else 0
