"""tandem's training step against a plain PyTorch step of the same configuration, on one device.

    python benchmarks/reference_step.py                       # both trainers at their digits defaults, CPU
    python benchmarks/reference_step.py --rounds 5 --steps 40 --trainers dit

The plain step is what a training script written from the PyTorch tutorials does with the same model,
batch, loss, optimizer settings and schedule: indices drawn on the CPU and copied to the device each step,
the foreach optimizer (PyTorch's default), `clip_grad_norm_` whatever the clip, an EMA updated one
parameter at a time over `named_parameters()`, and the classifier's normalisation constants built each
step. tandem's is the trainers' own `DiTStep` / `ClassifierStep` (built as benchmarks/throughput.py builds
them). Both start from the same weights and see the same threads; rounds alternate plain, tandem, so both
see the same load; the figure is the median per-step time over rounds, and the ratio plain / tandem.

Target (CPU, docs/benchmarks.md): tandem's DiT step at least 1.10x the plain one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from throughput import LONG_RUN, classifier_bench, dit_bench

from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig
from tandem.train.device import choose_device
from tandem.train.schedule import lr_scheduler

SHAPE = (1, 8, 8)  # digits


def plain_dit_step(bench, c: DiTTrainConfig):
    """The same DiT, data, loss and AdamW settings, written the plain way."""
    from tandem.flow import flow_matching_loss

    step_obj = bench.train_step
    model, data = step_obj.model, step_obj.data
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=LONG_RUN)
    ema = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator(data.train_images.device).manual_seed(1)
    order = torch.randperm(len(data.train_images))
    state = {"step": 0}

    def step():
        i = state["step"] % (len(order) // c.batch_size)
        idx = order[i * c.batch_size : (i + 1) * c.batch_size].to(data.train_images.device)
        x = data.train_images[idx].float() / 127.5 - 1
        loss = flow_matching_loss(model, x, data.train_labels[idx], generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            for name, p in model.named_parameters():
                ema[name].mul_(c.ema_decay).add_(p, alpha=1 - c.ema_decay)
        state["step"] += 1

    return step


def plain_classifier_step(bench, c: ClassifierTrainConfig):
    """The same classifier, data, loss and SGD settings, written the plain way."""
    step_obj = bench.train_step
    model, data = step_obj.model, step_obj.data
    mean, std = step_obj.mean.tolist(), step_obj.std.tolist()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay
    )
    scheduler = lr_scheduler(optimizer, schedule=c.lr_schedule, warmup=c.warmup_steps, total=LONG_RUN)
    order = torch.randperm(len(data.train_images))
    state = {"step": 0}

    def step():
        i = state["step"] % (len(order) // c.batch_size)
        idx = order[i * c.batch_size : (i + 1) * c.batch_size].to(data.train_images.device)
        images = step_obj.augment(data.train_images[idx], step_obj.generator)
        mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        x = (images.float() / 255 - mean_t) / std_t
        loss = F.cross_entropy(model(x), data.train_labels[idx], label_smoothing=c.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip or float("inf"))
        optimizer.step()
        scheduler.step()
        state["step"] += 1

    return step


def seconds_per_step(step, steps: int, device) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def builds(trainer: str, device, batch_size: int):
    """Two steps of one model built twice from the same seed: (plain step, tandem step, their models)."""
    if trainer == "dit":
        c = DiTTrainConfig(batch_size=batch_size)
        make = lambda: dit_bench(c.size, SHAPE, c.patch_size, batch_size, device, False)  # noqa: E731
        plain = plain_dit_step
    else:
        c = ClassifierTrainConfig(batch_size=batch_size)
        make = lambda: classifier_bench(SHAPE, batch_size, device, False)  # noqa: E731
        plain = plain_classifier_step
    torch.manual_seed(0)
    plain_bench = make()
    torch.manual_seed(0)
    tandem_bench = make()
    return plain(plain_bench, c), tandem_bench.step, plain_bench.train_step.model, tandem_bench.train_step.model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--device", default="cpu", help="cpu (the target's), cuda, ...")
    parser.add_argument("--trainers", default="dit,classifier")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and side")
    parser.add_argument("--threads", type=int, default=DiTTrainConfig().cpu_threads or torch.get_num_threads())
    parser.add_argument("--out", default="", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    device, _ = choose_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    results = {}
    for trainer in args.trainers.split(","):
        batch = {"dit": 64, "classifier": 128}[trainer]  # the CPU defaults
        plain, ours, _, _ = builds(trainer, device, batch)
        times = {"plain": [], "tandem": []}
        for _ in range(args.rounds):
            times["plain"].append(seconds_per_step(plain, args.steps, device))
            times["tandem"].append(seconds_per_step(ours, args.steps, device))
        p, t = statistics.median(times["plain"]), statistics.median(times["tandem"])
        results[trainer] = {"plain_ms": p * 1e3, "tandem_ms": t * 1e3, "speedup": p / t, "rounds": times}
        print(f"{trainer:>10}: plain {p * 1e3:.2f} ms/step, tandem {t * 1e3:.2f} ms/step, tandem {p / t:.3f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
