"""Train an image classifier, airbench style: the whole dataset lives on the device, batches are gathered
and augmented there (random translate, and flips where the data allows), SGD with Nesterov momentum,
label smoothing, warmup then decay, and test accuracy (with flip test-time augmentation) every epoch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tandem.data import Augment
from tandem.models import build_classifier
from tandem.train import distributed
from tandem.train.batches import BatchPlan
from tandem.train.config import ClassifierTrainConfig
from tandem.train.device import autocast
from tandem.train.evaluate import channel_stats, normalize, predict
from tandem.train.optimizers import sgd
from tandem.train.run import RunResult
from tandem.train.schedule import lr_scheduler, optimizer_step
from tandem.train.session import LossWindow, Session, StopSignal

# The flag to name when a checkpoint's model differs from this run's.
IDENTITY_FLAGS = {"in_channels": "--dataset", "num_classes": "--dataset"}


def train(c: ClassifierTrainConfig) -> RunResult:
    s = Session("classifier", c)
    try:
        return _train(s, c)
    finally:
        s.close()


def _train(s: Session, c: ClassifierTrainConfig) -> RunResult:
    data, device = s.data, s.device
    channels, image_size, _ = data.image_shape
    model_config = {
        "arch": c.arch,
        "num_classes": data.num_classes,
        "in_channels": channels,
        "image_size": image_size,
        "width": c.width or None,
    }
    model = build_classifier(**model_config).to(device)
    mean, std = channel_stats(data.train_images)
    if c.whiten and hasattr(model, "init_whitening"):
        model.init_whitening(normalize(data.train_images[:5000], mean, std))
    plan = BatchPlan(len(data.train_images), c.batch_size, c.seed, s.layout.rank, s.layout.world_size)
    total_steps = c.epochs * plan.steps_per_epoch
    resume = s.open_run({"dataset": c.dataset, **model_config}, IDENTITY_FLAGS, total_steps)  # last check

    channels_last = device.type == "cuda"  # faster convolutions on tensor cores
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = sgd(
        model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0, weight_decay=c.weight_decay
    )
    scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=total_steps)
    step = 0
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        s.restore(resume)
        step = resume["step"]
    net = s.prepare(model)
    augment = Augment(pad=c.translate, flip=data.flip)
    tta = c.tta and data.flip

    def training_state() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "model_config": model_config,
            "preprocess": {"mean": mean, "std": std},
            "class_names": data.class_names,
        }

    def test_accuracy() -> float:
        """Each rank scores its share of the test set; the counts are summed over ranks."""
        share = torch.arange(len(data.test_images), device=device).chunk(s.layout.world_size)
        idx = share[s.layout.rank] if s.layout.rank < len(share) else share[0][:0]
        with autocast(device, c.amp):
            logits = predict(model, data.test_images[idx], mean, std, tta_flip=tta, channels_last=channels_last)
        correct = (logits.argmax(dim=1) == data.test_labels[idx]).sum().item()
        correct, total = distributed.sum_all([correct, len(idx)], device)
        return correct / total

    s.print(
        f"classifier: {c.arch}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{c.epochs} epochs x {plan.steps_per_epoch} steps of {c.batch_size} images"
    )
    window, metrics = LossWindow(), {}
    with StopSignal() as stop, s.progress(total_steps) as bar:
        while step < total_steps:
            # a batch, gathered and augmented on the device
            idx = plan.indices(step).to(device)
            images = augment(data.train_images[idx], s.generators["data"])
            x = normalize(images, mean, std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = data.train_labels[idx]

            # one optimizer step
            with autocast(device, c.amp):
                loss = F.cross_entropy(net(x), y, label_smoothing=c.label_smoothing)
            grad_norm = optimizer_step(loss, model, optimizer, scheduler, c.grad_clip)
            step += 1
            bar.update()

            # bookkeeping: logs, test accuracy each epoch, checkpoints, stopping
            window.add(step, loss, grad_norm)
            stopping = s.should_stop(step, stop)
            end_of_epoch = step % plan.steps_per_epoch == 0
            checkpoint_due = stopping or step == total_steps or (c.checkpoint_every and step % c.checkpoint_every == 0)
            if step % c.log_every == 0 or end_of_epoch or checkpoint_due:
                # raises TrainingDiverged on a NaN/inf loss, before anything else is saved
                s.log_window(step, window, bar, lr=scheduler.get_last_lr()[0])
            if end_of_epoch:
                epoch = step // plan.steps_per_epoch
                with s.untimed():
                    metrics = {"epoch": epoch, "test_acc": test_accuracy()}
                s.log({"step": step, **metrics})
                s.print(f"epoch {epoch:>3}/{c.epochs}  test accuracy {metrics['test_acc']:.4f}")
            if checkpoint_due:
                s.save_checkpoint(step, training_state())
            if stopping:
                break

    status = "completed" if step >= total_steps else "stopped"
    return s.finish(status, step, metrics, {}, model)
