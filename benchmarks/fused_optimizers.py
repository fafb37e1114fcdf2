"""Foreach against fused optimizers on this machine: the time of one trainer step (forward, backward,
optimizer, EMA) with each, interleaved so that both see the same load.

    python benchmarks/fused_optimizers.py                   # DiT at its digits defaults, and the classifier
    python benchmarks/fused_optimizers.py --rounds 5 --steps 20

Each round times `--steps` steps with the foreach optimizer, then as many with the fused one, on models
built from the same seed; the figure is the median over rounds of the per-step time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from tandem.flow import EMA, flow_matching_loss
from tandem.models import DiTConfig, build_classifier, build_dit
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig


def dit_step(fused: bool):
    c = DiTTrainConfig()
    torch.manual_seed(0)
    model = build_dit(DiTConfig(size=c.size, image_size=8, patch_size=4, in_channels=1, num_classes=10))
    ema = EMA(model, c.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, fused=fused, foreach=not fused)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(c.batch_size, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (c.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        flow_matching_loss(model, x, y, generator=gen).backward()
        opt.step()
        ema.update(model)

    return step


def classifier_step(fused: bool):
    c = ClassifierTrainConfig()
    torch.manual_seed(0)
    model = build_classifier(c.arch, num_classes=10, in_channels=1, image_size=8, width=c.width or None)
    opt = torch.optim.SGD(
        model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay,
        fused=fused, foreach=not fused,
    )  # fmt: skip
    x, y = torch.rand(c.batch_size, 1, 8, 8), torch.randint(0, 10, (c.batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def seconds_per_step(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=DiTTrainConfig().cpu_threads or torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu")
    for name, build in (("dit", dit_step), ("classifier", classifier_step)):
        times = {False: [], True: []}
        for _ in range(args.rounds):
            for fused in (False, True):
                times[fused].append(seconds_per_step(build(fused), args.steps))
        foreach, fused = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"{name:>10}: foreach {foreach * 1e3:.2f} ms/step, fused {fused * 1e3:.2f} ms/step, {foreach / fused:.3f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
