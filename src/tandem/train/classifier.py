"""Train an image classifier, airbench style: the whole dataset lives on the device, batches are gathered
and augmented there (random translate, and flips where the data allows), SGD with Nesterov momentum,
label smoothing, warmup then decay. A validation split held out of the training images is scored every
epoch, with test-time augmentation (one-pixel translations, and mirror images where the data flips), and
keeps the best weights (checkpoints/best.pt); the test set is scored once, at the end, by those weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tandem.data import Augment, ImageData
from tandem.data.datasets import hold_out
from tandem.errors import UsageError
from tandem.models import build_classifier
from tandem.models.classifier import airbench_width
from tandem.train import distributed, memory
from tandem.train.batches import BatchPlan
from tandem.train.checkpoint import CheckpointError
from tandem.train.checkpoint import load as load_checkpoint
from tandem.train.checkpoint_names import BEST
from tandem.train.config import ClassifierTrainConfig
from tandem.train.config import total_steps as run_length
from tandem.train.device import autocast
from tandem.train.evaluate import predict
from tandem.train.loop import train_loop
from tandem.train.optimizers import sgd
from tandem.train.pixels import channel_stats, normalize
from tandem.train.run import RunResult
from tandem.train.schedule import lr_scheduler
from tandem.train.session import Session
from tandem.train.step import StepState, optimizer_step

# The flag to name when a checkpoint's model differs from this run's.
IDENTITY_FLAGS = {"in_channels": "--dataset", "num_classes": "--dataset"}


def build_model(c: ClassifierTrainConfig, data: ImageData, mean, std) -> tuple[nn.Module, dict]:
    """The classifier for this data (its stem whitened on the first 5000 images), and its settings."""
    channels, image_size, _ = data.image_shape
    if data.num_classes < 2 or image_size < 2:
        raise UsageError(
            f"--dataset {c.dataset}: {data.num_classes} class(es) of {image_size}x{image_size} images; a classifier "
            "needs at least two classes and 2x2 pixels: check --folder and --image-size"
        )
    model_config = {
        "arch": c.arch,
        "num_classes": data.num_classes,
        "in_channels": channels,
        "image_size": image_size,
        "width": c.width or None,
    }
    check_model_memory(c, model_config, data.train_images.device)
    model = build_classifier(**model_config).to(data.train_images.device)
    if c.whiten and hasattr(model, "init_whitening"):
        model.init_whitening(normalize(data.train_images[:5000], mean, std))
    return model, model_config


def check_model_memory(c: ClassifierTrainConfig, model_config: dict, device: torch.device) -> None:
    """The model and its training state (weights, gradients, the momentum buffer) must fit: refused
    before the model is built. (The batches are gathered from the training set, already on the device.)"""
    parameters = memory.count_parameters(lambda: build_classifier(**model_config))
    copies = 3 if c.momentum else 2
    memory.require_fits(
        memory.training_bytes(parameters, copies, 0),
        device,
        f"the classifier of --arch {c.arch}{f' --width {c.width}' if c.width else ''} ({parameters:,} parameters)",
        "pass a smaller --width",
    )


def with_width(identity: dict) -> dict:
    """A checkpoint's model identity with its width filled in: older checkpoints say None for airbench's own."""
    if identity.get("arch") == "airbench" and identity.get("width", 0) is None:
        return {**identity, "width": airbench_width(identity["image_size"])}
    return identity


@dataclasses.dataclass
class ClassifierStep(StepState):
    """One training step, batch -> loss -> update: what the loop repeats and benchmarks/throughput.py times."""

    c: ClassifierTrainConfig
    data: ImageData
    plan: BatchPlan
    model: nn.Module  # the module whose parameters are updated and saved
    net: nn.Module  # the module called: the model, or the model under DDP / torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: Augment
    generator: torch.Generator  # augmentation
    mean: torch.Tensor  # per channel, on the device: built once, not every step
    std: torch.Tensor
    channels_last: bool

    @classmethod
    def create(
        cls,
        c: ClassifierTrainConfig,
        data: ImageData,
        model: nn.Module,
        plan: BatchPlan,
        generator: torch.Generator,
        mean: list[float],
        std: list[float],
        total_steps: int,
        *,
        resume: dict | None = None,
        prepare: Callable[[nn.Module], nn.Module] = lambda model: model,
    ) -> ClassifierStep:
        """The optimizer and schedule of `c`, then ready(resume, prepare)."""
        channels_last = data.train_images.device.type == "cuda"  # faster convolutions on tensor cores
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = sgd(
            model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0, weight_decay=c.weight_decay
        )
        scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=total_steps)
        augment = Augment(pad=c.translate, flip=data.flip)
        device = data.train_images.device
        mean_t, std_t = (torch.tensor(v, dtype=torch.float32, device=device) for v in (mean, std))
        step = cls(c, data, plan, model, model, optimizer, scheduler, augment, generator, mean_t, std_t, channels_last)
        return step.ready(resume, prepare)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step `step`'s images, gathered, augmented and normalised on the device, and their labels."""
        idx = self.plan.indices(step)
        images = self.augment(self.data.train_images[idx], self.generator)
        x = normalize(images, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.data.train_labels[idx]

    def loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(module(x), y, label_smoothing=self.c.label_smoothing)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Optimizer step `step` (0-based); returns the loss and gradient norm, still on the device."""
        x, y = self.batch(step)
        with autocast(x.device, self.c.amp):
            loss = self.loss(self.net, x, y)
        grad_norm = optimizer_step(loss, self.model, self.optimizer, self.scheduler, self.c.grad_clip)
        return loss, grad_norm


def train(c: ClassifierTrainConfig, given: Collection[str] | None = None) -> RunResult:
    with Session("classifier", c, given) as s:
        return _train(s, s.config)  # the attempt's settings, with those chosen for its device


def _train(s: Session, c: ClassifierTrainConfig) -> RunResult:
    device = s.device
    data, val_images, val_labels = hold_out(s.data, c.val_fraction)  # validation: out of the training set
    s.data, s.validation_size = data, len(val_images)
    if c.batch_size > len(data.train_images):
        raise UsageError(
            f"--batch-size {c.batch_size} is larger than the {len(data.train_images)} training images left beside "
            f"the --val-fraction {c.val_fraction:g} held out; pass a smaller --batch-size"
        )
    mean, std = channel_stats(data.train_images)
    if c.arch == "airbench" and not c.width:
        c = s.choose(f"--arch airbench for {data.image_shape[-1]}px images", width=airbench_width(data.image_shape[-1]))
    model, model_config = build_model(c, data, mean, std)
    if s.run.state is not None:
        s.run.state["identity"] = with_width(s.run.state["identity"])
    plan = BatchPlan(len(data.train_images), c.batch_size, c.seed, s.layout.rank, s.layout.world_size, device)
    total_steps = run_length(c, plan.steps_per_epoch)
    resume = s.begin({"dataset": c.dataset, **model_config}, IDENTITY_FLAGS, total_steps)  # the last check

    train_step = ClassifierStep.create(
        c, data, model, plan, s.generators["data"], mean, std, total_steps, resume=resume, prepare=s.prepare
    )
    model = train_step.model
    tta = {"tta_flip": c.tta and data.flip, "tta_translate": c.tta and c.translate > 0}
    # The best weights by validation accuracy: every rank keeps them (all score the same), rank 0 saves them.
    best = Best.restored(resume, s.run.dir.checkpoints.directory)

    def training_state() -> dict:
        return {
            **train_step.state_dict(),
            "model_config": model_config,
            "preprocess": {"mean": mean, "std": std},
            "class_names": data.class_names,
            "best": best.record(),
        }

    def accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
        """Each rank scores its share of the images; the counts are summed over ranks."""
        share = torch.arange(len(images), device=device).chunk(s.layout.world_size)
        idx = share[s.layout.rank] if s.layout.rank < len(share) else share[0][:0]
        with autocast(device, c.amp):
            logits = predict(model, images[idx], mean, std, **tta, channels_last=train_step.channels_last)
        correct = (logits.argmax(dim=1) == labels[idx]).sum().item()
        correct, total = distributed.sum_all([correct, len(idx)], device)
        return correct / total

    epochs = -(-total_steps // plan.steps_per_epoch)

    def end_of_epoch(step: int) -> dict:
        epoch = step // plan.steps_per_epoch
        if not len(val_images):
            return {"epoch": epoch}
        val_acc = accuracy(val_images, val_labels)
        improved = best.offer(val_acc, step, model)
        if improved and s.is_main:  # what scoring needs, not what resuming needs
            s.run.save_best(step, {k: v for k, v in training_state().items() if k not in ("optimizer", "scheduler")})
        s.print(
            f"epoch {epoch:>3}/{epochs}  validation accuracy {val_acc:.4f}" + ("  (best so far)" if improved else "")
        )
        return {"epoch": epoch, "val_acc": val_acc, "elapsed_s": s.run.elapsed()}  # the time to a given accuracy

    s.print(
        f"classifier: {c.arch}, {sum(p.numel() for p in model.parameters()):,} parameters, {total_steps} steps "
        f"({total_steps / plan.steps_per_epoch:.3g} epochs of {plan.steps_per_epoch}) of {c.batch_size} images; "
        f"{len(val_images)} of the training images held out for validation"
    )
    step, _, timing = train_loop(
        s,
        train_step,
        total_steps,
        training_state=training_state,
        lr=lambda: train_step.scheduler.get_last_lr()[0],
        evaluate_every=plan.steps_per_epoch,
        evaluate=end_of_epoch,
    )
    if step < total_steps:
        return s.run.finish("stopped", step, best.metrics(), {}, model, timing)
    best.load_into(model)  # the test set is scored once, at the end, by the weights validation chose
    metrics = {"test_acc": accuracy(data.test_images, data.test_labels), **best.metrics()}
    s.print(f"test accuracy {metrics['test_acc']:.4f} ({best.describe()})")
    return s.run.finish("completed", step, metrics, {}, model, timing)


class Best:
    """The weights with the best validation accuracy so far, in host memory, and how good they were."""

    def __init__(self, val_acc: float = -1.0, step: int = 0, weights: dict | None = None):
        self.val_acc, self.step, self.weights = val_acc, step, weights

    @classmethod
    def restored(cls, resume: dict | None, checkpoints: Path) -> Best:
        """A resumed run's best: its value from the checkpoint resumed, its weights from best.pt when that
        holds them (else none yet: the next validation is the best)."""
        saved = (resume or {}).get("best") or {}
        try:
            kept = load_checkpoint(checkpoints / BEST) if saved else None
        except CheckpointError:
            kept = None
        if kept is None or kept["step"] != saved["step"]:  # none, or one from steps being redone: start afresh
            return cls()
        return cls(saved["val_acc"], saved["step"], kept["model"])

    def offer(self, val_acc: float, step: int, model: nn.Module) -> bool:
        """Keep `model`'s weights when they validate at least as well: a tie goes to the later weights,
        trained longer at a lower rate (a small validation set ties often)."""
        if val_acc < self.val_acc:
            return False
        self.val_acc, self.step = val_acc, step
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def load_into(self, model: nn.Module) -> None:
        if self.weights is not None:
            model.load_state_dict(self.weights)

    def record(self) -> dict:
        return {"val_acc": self.val_acc, "step": self.step} if self.val_acc >= 0 else {}

    def metrics(self) -> dict:
        return {"val_acc": self.val_acc, "best_step": self.step} if self.val_acc >= 0 else {}

    def describe(self) -> str:
        if self.val_acc < 0:
            return "the final weights; no validation split"
        return f"the weights of step {self.step}, validation accuracy {self.val_acc:.4f}"
