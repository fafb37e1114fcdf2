"""Training throughput (images per second) of both trainers and every DiT size on one device.

    python benchmarks/throughput.py                                  # everything, on the best device
    python benchmarks/throughput.py --trainers dit --dit-sizes B --shapes cifar --compile --batch-size 256

What is timed is one optimizer step of the real trainers, on synthetic data (`load_dataset("synthetic")`,
held on the device as the trainers hold theirs): each trainer's own step, `ClassifierStep` /
`DiTStep` from `tandem/train/classifier.py` / `tandem/train/dit.py`, the very object their training loop
calls, built with the tuned defaults of `ClassifierTrainConfig` / `DiTTrainConfig`: the batch gathered
and augmented on the device, the forward pass under the trainers' autocast (bf16 on CUDA), the loss,
backward, gradient-norm clipping, the optimizer and learning-rate scheduler steps, and for the DiT the
EMA update. `--compile` wraps the model in `torch.compile` as `--compile` does in the trainers.

With `--end-to-end`, each benchmark is also a real training run (`run_training`, in a scratch runs
directory) at the same model, shape and batch with the trainer's default cadence of checkpoints, sample
grids and evaluations: digits for the 1x8x8 shape, synthetic images for 3x32x32. It reports img/s end to
end (every image trained over the loop's wall time, the last checkpoint's write included) beside the
step figure, and the seconds spent checkpointing, sampling, evaluating and compiling.

Warm-up steps (which include compilation) are excluded; the timed steps are bracketed by
`torch.cuda.synchronize()` on CUDA. FLOPs per image are counted by `torch.utils.flop_counter.FlopCounterMode`
on one forward+backward of the loss (matmuls, convolutions and attention; attention is counted through
SDPA's math kernel so that it is counted on every device; no recomputation). On a GPU whose peak dense
bf16 FLOP/s is known (`PEAK_BF16`, or `--peak-tflops`) the model FLOPs utilisation is
MFU = FLOPs per image x images per second / peak.

Targets on one H100 SXM (bf16, `--compile`):
    default classifier (airbench, width 64) at 3x32x32   >= 150,000 img/s
    DiT-S/2 at 3x32x32                                   >= 8,000 img/s
    DiT-B/2 at 3x32x32                                   >= 40% MFU
docs/benchmarks.md records the measured figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

import tandem
from tandem.data import load_dataset
from tandem.models import DIT_SIZES, build_dit
from tandem.train import classifier, dit, run_training
from tandem.train.batches import BatchPlan
from tandem.train.config import CONFIGS, ClassifierTrainConfig, DiTTrainConfig, resolve_for_device
from tandem.train.device import choose_device, configure_determinism
from tandem.train.loop import LossWindow
from tandem.train.pixels import channel_stats

LONG_RUN = 10**9  # the schedule's length: any value costs the same per step
SHAPES = {"cifar": (3, 32, 32), "digits": (1, 8, 8)}
# DiT-X/2 at CIFAR size, as the targets name them; at 8x8 the trainer's default patch (4).
DEFAULT_PATCH = {"cifar": 2, "digits": DiTTrainConfig().patch_size}
# Too slow on a CPU at 32x32 to be worth waiting for; run when named explicitly or on a GPU.
SLOW_ON_CPU = {("L", "cifar"), ("XL", "cifar")}
# Peak dense (no sparsity) bf16 tensor-core FLOP/s from NVIDIA's data sheets, matched against the device
# name in order; anything else gets no MFU unless --peak-tflops is given.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
]


@dataclasses.dataclass
class Bench:
    """One benchmark: a training step to call repeatedly and a one-off count of its FLOPs."""

    step: Callable[[], None]  # one optimizer step
    count_flops: Callable[[], float]  # FLOPs of one forward+backward on a small batch, per image
    window: LossWindow  # the losses of the timed steps, checked for NaN at the end
    params: int
    train_step: classifier.ClassifierStep | dit.DiTStep


def source_state() -> dict:
    """Which tandem source is measured: its path, and its commit ("-dirty": uncommitted edits in src/)."""
    root = Path(tandem.__file__).resolve().parents[2]
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"tandem_source": str(root), "commit": None}
    return {"tandem_source": str(root), "commit": commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")}


def synthetic(shape, batch_size, device):
    # Enough images for a few distinct batches, on the device, as the trainers keep their data.
    return load_dataset("synthetic", ".", synthetic_shape=shape, synthetic_size=max(2048, 4 * batch_size)).to(device)


def counted_flops(loss_fn, images: int) -> float:
    """FLOPs per image of loss_fn()'s forward and backward."""
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        loss_fn().backward()
    return counter.get_total_flops() / images


def classifier_bench(shape, batch_size, device, compile) -> Bench:
    """The classifier trainer's step: SGD Nesterov, label smoothing, translate/flip, channels_last on CUDA."""
    c = dataclasses.replace(ClassifierTrainConfig(), batch_size=batch_size, compile=compile)
    data = synthetic(shape, batch_size, device)
    mean, std = channel_stats(data.train_images)
    model, _ = classifier.build_model(c, data, mean, std)
    plan = BatchPlan(len(data.train_images), batch_size, seed=0, device=device)
    generator = torch.Generator(device).manual_seed(0)
    train_step = classifier.ClassifierStep.create(
        c, data, model, plan, generator, mean, std, LONG_RUN, prepare=compiled if compile else lambda m: m
    )
    return bench_of(train_step)


def dit_bench(size, shape, patch_size, batch_size, device, compile) -> Bench:
    """The DiT trainer's step: flow-matching loss, AdamW, an EMA update every step."""
    c = dataclasses.replace(
        DiTTrainConfig(), size=size, patch_size=patch_size, batch_size=batch_size, steps=LONG_RUN, compile=compile
    )
    data = synthetic(shape, batch_size, device)
    model = build_dit(dit.model_config_of(c, data)).to(device)
    plan = BatchPlan(len(data.train_images), batch_size, seed=0, device=device)
    generators = {name: torch.Generator(device).manual_seed(i) for i, name in enumerate(("data", "noise"))}
    train_step = dit.DiTStep.create(
        c, data, model, plan, generators, LONG_RUN, prepare=compiled if compile else lambda m: m
    )
    return bench_of(train_step)


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    return torch.compile(model)


def bench_of(train_step: classifier.ClassifierStep | dit.DiTStep) -> Bench:
    window, steps = LossWindow(), itertools.count()

    def step():
        loss, grad_norm = train_step(next(steps))
        window.add(0, loss, grad_norm)

    def count_flops(n=2):
        x, y = train_step.batch(next(steps))
        flops = counted_flops(lambda: train_step.loss(train_step.model, x[:n], y[:n]), n)
        train_step.optimizer.zero_grad(set_to_none=True)
        return flops

    return Bench(step, count_flops, window, sum(p.numel() for p in train_step.model.parameters()), train_step)


def end_to_end(trainer: str, size, shape_name: str, patch: int, batch_size: int, device, compile, steps: int) -> dict:
    """A real run of `steps` steps (the classifier: whole epochs, at least `steps`) at the trainer's default
    cadence; its timing: img/s end to end and where the time between steps went."""
    data = {"dataset": "digits"} if shape_name == "digits" else {"dataset": "synthetic"}
    with tempfile.TemporaryDirectory() as scratch:
        common = dict(
            **data, batch_size=batch_size, device=str(device), compile=compile, runs_dir=scratch,
            data_dir=str(Path(scratch) / "data"), run_name="e2e", loggers="none",
        )  # fmt: skip
        if trainer == "dit":
            config = DiTTrainConfig(**common, size=size, patch_size=patch, steps=steps)
        else:
            images = 1437 if shape_name == "digits" else 2048  # the training sets of digits and synthetic
            config = ClassifierTrainConfig(**common, epochs=math.ceil(steps / max(images // batch_size, 1)))
        result = run_training(trainer, config)
    timing = result.timing
    return {
        "e2e_steps": result.step,
        "e2e_img_per_s": timing["end_to_end_img_per_s"],
        "e2e_step_img_per_s": timing["step_img_per_s"],
        **{f"e2e_{k}": v for k, v in timing.items() if k.endswith("_s")},
    }


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_flops(device, override_tflops: float) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def measure(bench: Bench, device, batch_size: int, warmup: int, steps: int, label: str) -> dict:
    with tqdm(total=warmup + steps, desc=label, unit="step", leave=False, file=sys.stderr) as bar:
        start = time.perf_counter()
        for _ in range(warmup):
            bench.step()
            bar.update()
        sync(device)
        warmup_s = time.perf_counter() - start
        bench.window.read()  # drop the warm-up losses
        start = time.perf_counter()
        for _ in range(steps):
            bench.step()
            bar.update()
        sync(device)
        elapsed = time.perf_counter() - start
    loss, _, bad_step = bench.window.read()
    if bad_step is not None:
        raise RuntimeError(f"{label}: the loss became NaN/inf; the figure would be meaningless")
    return {
        "img_per_s": steps * batch_size / elapsed,
        "step_ms": 1000 * elapsed / steps,
        "warmup_s": warmup_s,
        "loss": loss,
    }


def parse_list(text: str, allowed) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {', '.join(unknown)}; pick from {', '.join(allowed)}")
    return items


def plan_runs(args, device) -> list[tuple[str, str | None, str]]:
    """(trainer, DiT size or None, shape) for every benchmark, and a note for each one skipped."""
    explicit_sizes = args.dit_sizes is not None
    sizes = parse_list(args.dit_sizes or ",".join(DIT_SIZES), DIT_SIZES)
    runs = []
    for shape in parse_list(args.shapes, SHAPES):
        for trainer in parse_list(args.trainers, ("classifier", "dit")):
            if trainer == "classifier":
                runs.append(("classifier", None, shape))
                continue
            for size in sizes:
                if device.type == "cpu" and (size, shape) in SLOW_ON_CPU and not explicit_sizes:
                    print(f"note: skipping DiT-{size} at {shape} shape on the CPU (name it in --dit-sizes to run it)")
                    continue
                runs.append(("dit", size, shape))
    return runs


def rate(img_per_s: float) -> str:
    return f"{img_per_s:,.0f}" if img_per_s >= 100 else f"{img_per_s:.3g}"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | shape | batch | img/s | ms/step | GFLOP/img | TFLOP/s | MFU | end to end img/s | checkpoint / sample / eval / compile s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        if "error" in r:
            lines.append(f"| {r['model']} | {shape} | {r['batch_size']} | {r['error']} | | | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        e2e, spent = "-", "-"
        if "e2e_img_per_s" in r:
            e2e = f"{rate(r['e2e_img_per_s'])} ({r['e2e_steps']} steps)"
            spent = " / ".join(f"{r[f'e2e_{part}_s']:.1f}" for part in ("checkpoint", "sample", "evaluate", "compile"))
        lines.append(
            f"| {r['model']} | {shape} | {r['batch_size']} | {rate(r['img_per_s'])} | {r['step_ms']:,.0f} | "
            f"{r['flops_per_image'] / 1e9:.3g} | {r['achieved_tflops']:.3g} | {mfu} | {e2e} | {spent} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu")
    parser.add_argument("--trainers", default="classifier,dit", help="comma-separated: classifier, dit")
    parser.add_argument(
        "--dit-sizes",
        default=None,
        help=f"comma-separated DiT sizes (default: all; on a CPU, L and XL only at 8x8): {','.join(DIT_SIZES)}",
    )
    parser.add_argument("--shapes", default="cifar,digits", help="comma-separated: cifar (3x32x32), digits (1x8x8)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="images per step (0: each trainer's default on the device, e.g. 128 classifier / 64 DiT on CPU)",
    )
    parser.add_argument("--patch-size", type=int, default=0, help="DiT patch size (0: 2 at 32x32, 4 at 8x8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per benchmark")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model, as the trainers' --compile")
    parser.add_argument(
        "--end-to-end", action="store_true", help="also a real run per benchmark at the default cadence (see above)"
    )
    parser.add_argument("--e2e-steps", type=int, default=300, help="steps of each --end-to-end run")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on CUDA")
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=ClassifierTrainConfig().cpu_threads,
        help="torch threads on the CPU (default: the trainers' default; 0: one per core)",
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=0.0, help="the GPU's peak dense bf16 TFLOP/s, if not known"
    )
    parser.add_argument("--out", default="throughput.jsonl", help="JSONL file of results (overwritten)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")

    device, why = choose_device(args.device)
    configure_determinism(False)  # the trainers' default: cuDNN autotuning, TF32 matmuls
    if device.type == "cpu" and args.cpu_threads:
        torch.set_num_threads(args.cpu_threads)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = peak_flops(device, args.peak_tflops) if args.amp or args.peak_tflops else None
    source = source_state()
    print(f"device: {device} ({why}); torch {torch.__version__}; {torch.get_num_threads()} threads")
    print(f"source: {source['tandem_source']} (commit {source['commit'] or 'unknown'})")
    if device.type == "cuda" and peak is None:
        print(f"note: peak bf16 FLOP/s of {device_name!r} unknown: no MFU (pass --peak-tflops)")

    results = []
    out = Path(args.out)
    out.write_text("")
    for trainer, size, shape_name in plan_runs(args, device):
        shape = SHAPES[shape_name]
        batch_size = args.batch_size or resolve_for_device(trainer, CONFIGS[trainer](), device.type)[0].batch_size
        patch = args.patch_size or DEFAULT_PATCH[shape_name]
        model = "classifier (airbench)" if trainer == "classifier" else f"DiT-{size}/{patch}"
        record = {
            "model": model,
            "trainer": trainer,
            "size": size,
            "patch_size": patch if trainer == "dit" else None,
            "shape": list(shape),
            "batch_size": batch_size,
            "device": str(device),
            "device_name": device_name,
            "compile": args.compile,
            "bf16": args.amp and device.type == "cuda",
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
            **source,
        }
        started = time.perf_counter()
        try:
            if trainer == "classifier":
                bench = classifier_bench(shape, batch_size, device, args.compile)
            else:
                bench = dit_bench(size, shape, patch, batch_size, device, args.compile)
            flops, params = bench.count_flops(), bench.params
            record.update(measure(bench, device, batch_size, args.warmup, args.steps, f"{model} {shape_name}"))
            if args.end_to_end:
                bench = None  # its model and optimizer state leave the device first
                record.update(
                    end_to_end(trainer, size, shape_name, patch, batch_size, device, args.compile, args.e2e_steps)
                )
            record.update(
                params=params,
                flops_per_image=flops,
                achieved_tflops=flops * record["img_per_s"] / 1e12,
                peak_flops=peak,
                mfu=flops * record["img_per_s"] / peak if peak else None,
            )
        except torch.cuda.OutOfMemoryError:
            record["error"] = "out of memory"
        finally:
            bench = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
        record["seconds"] = time.perf_counter() - started
        results.append(record)
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        done = record.get("error") or f"{rate(record['img_per_s'])} img/s"
        tqdm.write(f"{model:>22} {shape_name:>6}  {done}  ({record['seconds']:.0f}s)")

    print()
    print(markdown_table(results))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
