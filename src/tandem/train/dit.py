"""Train a class-conditional DiT by flow matching: images in [-1, 1], AdamW, an EMA of the weights updated
every step, and sample grids from the EMA model (Euler/Heun, classifier-free guidance) along the way."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path

import torch
import torch.nn as nn

from tandem.data import Augment, ImageData
from tandem.flow import flow_matching_loss
from tandem.models import DiTConfig, build_dit
from tandem.models.dit import DiTBlock
from tandem.models.ema import EMA
from tandem.runs import resolve_checkpoint
from tandem.train import distributed, memory
from tandem.train.batches import BatchPlan
from tandem.train.config import DiTTrainConfig, total_steps
from tandem.train.device import autocast
from tandem.train.evaluate import SampleClassifier, score_samples
from tandem.train.loop import train_loop
from tandem.train.optimizers import adamw
from tandem.train.pixels import to_uint8
from tandem.train.run import RunResult
from tandem.train.samples import (
    LATEST,
    GridsInBackground,
    caption,
    class_samples,
    grid_labels,
    grid_layout,
    save_grid,
)
from tandem.train.schedule import lr_scheduler
from tandem.train.session import Session
from tandem.train.step import StepState, optimizer_step
from tandem.train.validate import check_patch_size

# The flag to name when a checkpoint's model differs from this run's.
IDENTITY_FLAGS = {
    "in_channels": "--dataset",
    "num_classes": "--dataset",
    "class_dropout_prob": "--class-dropout",
    "hidden_size": "--hidden-size",
    "num_heads": "--heads",
}


def model_config_of(c: DiTTrainConfig, data: ImageData) -> DiTConfig:
    """The DiT of these settings for this data."""
    channels, _, image_size = data.image_shape
    return DiTConfig(
        size=c.size,
        image_size=image_size,
        patch_size=c.patch_size,
        in_channels=channels,
        num_classes=data.num_classes,
        class_dropout_prob=c.class_dropout,
        depth=c.depth or None,
        hidden_size=c.hidden_size or None,
        num_heads=c.heads or None,
    )


def with_shape(identity: dict) -> dict:
    """A checkpoint's model identity with its shape filled in: older checkpoints say None for the preset's."""
    shape = DiTConfig(size=identity.get("size", "tiny")).shape
    filled = {"depth": shape.depth, "hidden_size": shape.hidden_size, "num_heads": shape.num_heads}
    return {**identity, **{k: v for k, v in filled.items() if identity.get(k, 0) is None}}


@dataclasses.dataclass
class DiTStep(StepState):
    """One training step, batch -> loss -> update -> EMA: what the loop repeats and benchmarks/throughput.py
    times."""

    c: DiTTrainConfig
    data: ImageData
    plan: BatchPlan
    model: nn.Module  # the module whose parameters are updated and saved
    net: nn.Module  # the module called: the model, or the model under DDP / torch.compile
    ema: EMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: Augment
    generators: dict[str, torch.Generator]  # "data" (augmentation) and "noise" (timesteps, noise, label drop)
    PARTS = ("model", "ema", "optimizer", "scheduler")  # what a checkpoint holds of the step

    @classmethod
    def create(
        cls,
        c: DiTTrainConfig,
        data: ImageData,
        model: nn.Module,
        plan: BatchPlan,
        generators: dict[str, torch.Generator],
        total_steps: int,
        *,
        resume: dict | None = None,
        prepare: Callable[[nn.Module], nn.Module] = lambda model: model,
    ) -> DiTStep:
        """The EMA, optimizer and schedule of `c` over `total_steps`, then ready(resume, prepare)."""
        ema = EMA(model, c.ema_decay)
        optimizer = adamw(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=total_steps)
        augment = Augment(flip=data.flip)
        step = cls(c, data, plan, model, model, ema, optimizer, scheduler, augment, generators)
        return step.ready(resume, prepare)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step `step`'s images on the device, as floats in [-1, 1], and their labels."""
        idx = self.plan.indices(step)
        x = self.augment(self.data.train_images[idx], self.generators["data"]).float() / 127.5 - 1
        return x, self.data.train_labels[idx]

    def loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The flow-matching loss: noise, timesteps and dropped labels drawn from the "noise" stream."""
        return flow_matching_loss(module, x, y, generator=self.generators["noise"], schedule=self.c.timestep_schedule)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimizer step `step` (0-based); returns the loss and gradient norm, still on the device."""
        x, y = self.batch(step)
        with autocast(x.device, self.c.amp):
            loss = self.loss(self.net, x, y)
        grad_norm = optimizer_step(loss, self.model, self.optimizer, self.scheduler, self.c.grad_clip)
        self.ema.update(self.model)
        return loss, grad_norm


def train(c: DiTTrainConfig, given: Collection[str] | None = None) -> RunResult:
    with Session("dit", c, given) as s:
        return _train(s, s.config)  # the attempt's settings, with those chosen for its device


def _train(s: Session, c: DiTTrainConfig) -> RunResult:
    data, device = s.data, s.device
    image_shape = data.image_shape
    check_patch_size(image_shape[-1], c.patch_size)  # the dataset's own size, when no --image-size
    shape = DiTConfig(c.size, depth=c.depth or None, hidden_size=c.hidden_size or None, num_heads=c.heads or None).shape
    preset = {"depth": shape.depth, "hidden_size": shape.hidden_size, "heads": shape.num_heads}
    c = s.choose(f"--size {c.size}", **{name: value for name, value in preset.items() if not getattr(c, name)})
    if c.classifier_checkpoint and not c.eval_samples:
        c = s.choose("the test set", eval_samples=len(data.test_images))
    model_config = model_config_of(c, data)
    check_sample_memory(c, data.num_classes, image_shape, len(data.test_images), device)
    check_model_memory(c, model_config, c.batch_size // s.layout.world_size, device)
    model = build_dit(model_config).to(device)

    def load_classifier() -> SampleClassifier | None:  # rank 0 evaluates; other nodes need not have the file
        if not c.classifier_checkpoint:
            return None
        found = resolve_checkpoint(c.classifier_checkpoint, c.runs_dir, "classifier", "--classifier-checkpoint")
        classifier = SampleClassifier.load(found, device)
        classifier.check_matches(c.dataset, data.num_classes, image_shape)
        return classifier

    classifier = distributed.first_where(s.is_main, load_classifier)
    if s.run.state is not None:
        s.run.state["identity"] = with_shape(s.run.state["identity"])
    plan = BatchPlan(len(data.train_images), c.batch_size, c.seed, s.layout.rank, s.layout.world_size, device)
    total = total_steps(c, plan.steps_per_epoch)
    resume = s.begin({"dataset": c.dataset, **dataclasses.asdict(model_config)}, IDENTITY_FLAGS, total)
    train_step = DiTStep.create(c, data, model, plan, s.generators, total, resume=resume, prepare=s.prepare)
    ema = train_step.ema

    def training_state() -> dict:
        return {
            **train_step.state_dict(),
            "model_config": dataclasses.asdict(model_config),
            "class_names": data.class_names,
        }

    def grid(step: int) -> Path:
        return s.run.dir.samples_dir / f"step_{step:07d}.png"

    def draw_grid(module: torch.nn.Module, step: int) -> Path:
        """A grid from these (EMA) weights, written to the run; on any thread, no collectives inside."""
        labels = grid_labels(data.num_classes, c.samples_per_class, device)
        images = class_samples(
            module, labels, image_shape, steps=c.sample_steps, solver=c.solver, cfg_scale=c.cfg_scale, seed=c.seed
        )
        return save_grid(
            images,
            c.samples_per_class,
            grid(step),
            class_names=data.class_names,
            caption=caption(s.run.dir.path.name, step, c.solver, c.sample_steps, c.cfg_scale, c.seed),
            latest=s.run.dir.samples_dir / LATEST,
        )

    def drawn(step: int, path: Path) -> None:
        s.run.log_image("samples", path, step)

    def save_samples(step: int) -> Path:
        """A grid of the EMA weights drawn now (rank 0): on resume, and at the end."""
        path = draw_grid(ema.module, step)
        drawn(step, path)
        return path

    # Mid-run grids, rank 0 only: the other ranks go on training.
    grids = GridsInBackground(ema.module, draw_grid, drawn) if s.is_main and c.sample_every else None

    start = s.run.start_step
    if resume is not None and c.sample_every and start % c.sample_every == 0 and start < c.steps:
        if s.is_main and not grid(start).exists():  # the last attempt ended while drawing it, after its checkpoint
            s.print(f"{grid(start)} is missing: drawing it from the checkpoint's EMA weights")
            save_samples(start)
    s.print(
        f"dit: {c.size} ({'x'.join(map(str, model_config.shape))} depth x width x heads), {sum(p.numel() for p in model.parameters()):,} parameters, patch {c.patch_size}, "
        f"{total} steps ({total / plan.steps_per_epoch:.3g} epochs) of {c.batch_size} {'x'.join(map(str, image_shape))} images"
    )
    step, _, timing = train_loop(
        s,
        train_step,
        total,
        training_state=training_state,
        lr=lambda: train_step.scheduler.get_last_lr()[0],
        sample_every=c.sample_every if grids else 0,
        grids=grids,
    )
    if step < total:
        return s.run.finish("stopped", step, {}, {}, model, timing)
    artifacts, metrics = {}, {}
    if s.is_main:
        artifacts["samples"] = save_samples(step)
        if classifier is not None:
            metrics = evaluate(s, c, ema.module, classifier)
    return s.run.finish("completed", step, metrics, artifacts, model, timing)


# What a DiT's training holds per parameter: weights, gradients, AdamW's two moments, and the EMA.
DIT_COPIES = 5


def dit_parameters(model_config: DiTConfig) -> int:
    """The DiT's parameter count, from a one-block model and one block built on the meta device: building
    every block of a deep model would take as long as building the model."""
    depth, width, heads = model_config.shape
    one_block = memory.count_parameters(lambda: build_dit(dataclasses.replace(model_config, depth=1)))
    return one_block + (depth - 1) * memory.count_parameters(lambda: DiTBlock(width, heads, model_config.mlp_ratio))


def check_model_memory(c: DiTTrainConfig, model_config: DiTConfig, batch: int, device) -> None:
    """The model, its training state and the activations of one batch (`batch` per device) must fit:
    refused here, before the model is built (a deep or wide one takes minutes to build, or cannot be)."""
    depth, width, heads = model_config.shape
    parameters = dit_parameters(model_config)
    tokens = (model_config.image_size // model_config.patch_size) ** 2
    activations = depth * batch * tokens * width  # at least the residual stream each block keeps for backward
    memory.require_fits(
        memory.training_bytes(parameters, DIT_COPIES, activations),
        device,
        f"the DiT of --depth {depth} --hidden-size {width} --heads {heads} ({parameters:,} parameters; --patch-size "
        f"{model_config.patch_size}, --batch-size {c.batch_size})",
        "pass a smaller --depth, --hidden-size or --batch-size",
    )


def check_sample_memory(c: DiTTrainConfig, num_classes: int, image_shape, test_size: int, device) -> None:
    """The sample grids and the evaluation's samples must fit: refused here, before any training."""
    png = grid_layout(num_classes, c.samples_per_class, image_shape[-1]).size
    needed = memory.grid_bytes(num_classes * c.samples_per_class, image_shape, png[0] * png[1])
    memory.require_fits(
        needed, device, f"--samples-per-class {c.samples_per_class}", "pass a smaller --samples-per-class"
    )
    if c.classifier_checkpoint:
        n = c.eval_samples or test_size
        memory.require_fits(
            memory.grid_bytes(n, image_shape, 0), device, f"--eval-samples {n}", "pass a smaller --eval-samples"
        )


def evaluate(s: Session, c: DiTTrainConfig, model: torch.nn.Module, classifier: SampleClassifier) -> dict:
    """Sample accuracy and Frechet distance (with its floor) of the EMA model's samples."""
    data = s.data
    n = c.eval_samples or len(data.test_images)
    labels = torch.arange(n, device=s.device) % data.num_classes
    images = class_samples(
        model, labels, data.image_shape, steps=c.sample_steps, solver=c.solver, cfg_scale=c.cfg_scale, seed=c.seed + 1
    )
    scores = score_samples(classifier, to_uint8(images), labels, data.train_images, data.test_images, seed=c.seed)
    s.print(
        f"evaluation: {scores['sample_acc']:.2%} of {n} samples classified as intended; Frechet distance "
        f"{scores['fd']:.3f} (floor {scores['fd_floor']:.3f}, ratio {scores['fd_ratio']:.2f})"
    )
    return scores
