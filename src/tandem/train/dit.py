"""Train a class-conditional DiT by flow matching: images in [-1, 1], AdamW, an EMA of the weights updated
every step, and sample grids from the EMA model (Euler/Heun, classifier-free guidance) along the way."""

from __future__ import annotations

import dataclasses

import torch

from tandem.data import Augment
from tandem.flow import EMA, flow_matching_loss
from tandem.models import DiTConfig, build_dit
from tandem.train import memory
from tandem.train.batches import BatchPlan
from tandem.train.config import DiTTrainConfig
from tandem.train.device import autocast
from tandem.train.evaluate import Judge, score_samples, to_uint8
from tandem.train.optimizers import adamw
from tandem.train.run import RunResult
from tandem.train.samples import LATEST, caption, class_samples, grid_labels, grid_layout, save_grid
from tandem.train.schedule import lr_scheduler, optimizer_step
from tandem.train.session import LossWindow, Session, StopSignal

# The flag to name when a checkpoint's model differs from this run's.
IDENTITY_FLAGS = {
    "in_channels": "--dataset",
    "num_classes": "--dataset",
    "class_dropout_prob": "--class-dropout",
    "hidden_size": "--width",
    "num_heads": "--heads",
}


def train(c: DiTTrainConfig) -> RunResult:
    s = Session("dit", c)
    try:
        return _train(s, c)
    finally:
        s.close()


def _train(s: Session, c: DiTTrainConfig) -> RunResult:
    data, device = s.data, s.device
    image_shape = data.image_shape
    model_config = DiTConfig(
        size=c.size,
        image_size=image_shape[-1],
        patch_size=c.patch_size,
        in_channels=image_shape[0],
        num_classes=data.num_classes,
        class_dropout_prob=c.class_dropout,
        depth=c.depth or None,
        hidden_size=c.width or None,
        num_heads=c.heads or None,
    )
    check_sample_memory(c, data.num_classes, image_shape, len(data.test_images), device)
    model = build_dit(model_config).to(device)
    judge = None
    if c.classifier_checkpoint:
        judge = Judge.load(c.classifier_checkpoint, device)
        judge.check_matches(c.dataset, data.num_classes, image_shape)
    resume = s.open_run({"dataset": c.dataset, **dataclasses.asdict(model_config)}, IDENTITY_FLAGS)

    ema = EMA(model, c.ema_decay)
    optimizer = adamw(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=c.steps)
    step = 0
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        s.restore(resume)
        step = resume["step"]
    net = s.prepare(model)
    plan = BatchPlan(len(data.train_images), c.batch_size, c.seed, s.layout.rank, s.layout.world_size)
    augment = Augment(flip=data.flip)

    def training_state() -> dict:
        return {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "model_config": dataclasses.asdict(model_config),
            "class_names": data.class_names,
        }

    def save_samples(step: int):
        """A grid from the EMA weights, rank 0 only (no collectives inside)."""
        if not s.is_main:
            return None
        labels = grid_labels(data.num_classes, c.samples_per_class, device)
        images = class_samples(
            ema.module, labels, image_shape, steps=c.sample_steps, solver=c.solver, cfg_scale=c.cfg_scale, seed=c.seed
        )
        return save_grid(
            images,
            c.samples_per_class,
            s.run.samples_dir / f"step_{step:07d}.png",
            class_names=data.class_names,
            caption=caption(s.run.path.name, step, c.solver, c.sample_steps, c.cfg_scale, c.seed),
            latest=s.run.samples_dir / LATEST,
        )

    s.print(
        f"dit: {c.size} ({'x'.join(map(str, model_config.shape))} depth x width x heads), {sum(p.numel() for p in model.parameters()):,} parameters, patch {c.patch_size}, "
        f"{c.steps} steps of {c.batch_size} {'x'.join(map(str, image_shape))} images"
    )
    window = LossWindow()
    with StopSignal() as stop, s.progress(c.steps) as bar:
        while step < c.steps:
            # a batch on the device, as floats in [-1, 1]
            idx = plan.indices(step).to(device)
            x = augment(data.train_images[idx], s.generators["data"]).float() / 127.5 - 1
            y = data.train_labels[idx]

            # one optimizer step, then the EMA
            with autocast(device, c.amp):
                loss = flow_matching_loss(net, x, y, generator=s.generators["noise"], schedule=c.timestep_schedule)
            grad_norm = optimizer_step(loss, model, optimizer, scheduler, c.grad_clip)
            ema.update(model)
            step += 1
            bar.update()

            # bookkeeping: logs, checkpoints, sample grids, stopping
            window.add(step, loss, grad_norm)
            stopping = s.should_stop(step, stop)
            checkpoint_due = stopping or step == c.steps or (c.checkpoint_every and step % c.checkpoint_every == 0)
            if step % c.log_every == 0 or checkpoint_due:
                # raises TrainingDiverged on a NaN/inf loss, before anything else is saved
                s.log_window(step, window, bar, lr=scheduler.get_last_lr()[0])
            if checkpoint_due:
                s.save_checkpoint(step, training_state())
            if c.sample_every and step % c.sample_every == 0 and step < c.steps:
                with s.untimed():
                    save_samples(step)
            if stopping:
                break

    if step < c.steps:
        return s.finish("stopped", step, {}, {}, model)
    artifacts, metrics = {}, {}
    if s.is_main:
        artifacts["samples"] = save_samples(step)
        if judge is not None:
            metrics = evaluate(s, c, ema.module, judge)
    return s.finish("completed", step, metrics, artifacts, model)


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


def evaluate(s: Session, c: DiTTrainConfig, model: torch.nn.Module, judge: Judge) -> dict:
    """Sample accuracy and Frechet distance (with its floor) of the EMA model's samples."""
    data = s.data
    n = c.eval_samples or len(data.test_images)
    labels = torch.arange(n, device=s.device) % data.num_classes
    images = class_samples(
        model, labels, data.image_shape, steps=c.sample_steps, solver=c.solver, cfg_scale=c.cfg_scale, seed=c.seed + 1
    )
    scores = score_samples(judge, to_uint8(images), labels, data.train_images, data.test_images, seed=c.seed)
    s.print(
        f"evaluation: {scores['sample_acc']:.2%} of {n} samples classified as intended; Frechet distance "
        f"{scores['fd']:.3f} (floor {scores['fd_floor']:.3f}, ratio {scores['fd_ratio']:.2f})"
    )
    return scores
