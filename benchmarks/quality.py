"""Quality of the tuned defaults on the real digits data: what `tandem train classifier` and then
`tandem train dit --classifier-checkpoint <its run>` give with no other flags, for each seed. The
classifier holds a tenth of its training images out for validation, keeps its best weights by it, and
scores the test set once with them; the DiT is judged by those weights.

    python benchmarks/quality.py --device cpu --seeds 0,1,2

Both runs go through `run_training`, the trainers' one entry point; the DiT run's final evaluation is
the trainer's own (`tandem.train.evaluate`: the trained classifier labels class-conditional CFG samples,
and the Frechet distance between samples and held-out images in its penultimate feature space is set
next to its floor, real training vs held-out images).

Training seconds are the run's own clock (`elapsed_s` in metrics.jsonl at the last step: model set-up,
training, per-epoch evaluation, checkpoints and sample grids; not data loading or the final DiT
evaluation); wall seconds are the whole `run_training` call.

Bars (on a 2-core CPU):
    classifier   test accuracy (of the weights validation chose) >= 98%, trained in < 60 s
    DiT          trained in < 5 minutes; sample accuracy >= 97%; Frechet distance <= 3x its floor
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from throughput import source_state  # benchmarks/ is on sys.path when a script here runs

from tandem.train import run_training
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig, default_data_dir
from tandem.train.run import RunDir

BARS = {  # name: (field, test, text)
    "classifier accuracy": ("test_acc", lambda v: v >= 0.98, ">= 98%"),
    "classifier time": ("classifier_train_s", lambda v: v < 60, "< 60 s"),
    "DiT time": ("dit_train_s", lambda v: v < 300, "< 300 s"),
    "sample accuracy": ("sample_acc", lambda v: v >= 0.97, ">= 97%"),
    "Frechet ratio": ("fd_ratio", lambda v: v <= 3, "<= 3x floor"),
}
COLUMNS = [  # field, header, format
    ("val_acc", "classifier best val acc", "{:.2%}"),
    ("test_acc", "classifier test acc", "{:.2%}"),
    ("classifier_train_s", "classifier train s", "{:.1f}"),
    ("classifier_wall_s", "classifier wall s", "{:.1f}"),
    ("dit_train_s", "DiT train s", "{:.1f}"),
    ("dit_wall_s", "DiT wall s", "{:.1f}"),
    ("sample_acc", "sample acc", "{:.2%}"),
    ("fd", "FD", "{:.3f}"),
    ("fd_floor", "FD floor", "{:.3f}"),
    ("fd_ratio", "FD / floor", "{:.2f}"),
]


def train_seconds(run_dir: str) -> float:
    """The run's clock at its last logged step."""
    return [r for r in RunDir(Path(run_dir)).read_metrics() if "elapsed_s" in r][-1]["elapsed_s"]


def timed(kind, config):
    start = time.perf_counter()
    result = run_training(kind, config)
    if result.status != "completed":
        raise SystemExit(f"{kind} run {result.run_dir} ended {result.status}")
    return result, time.perf_counter() - start


def one_seed(seed: int, args) -> dict:
    common = dict(
        seed=seed, device=args.device, cpu_threads=args.cpu_threads, runs_dir=args.runs_dir, data_dir=args.data_dir
    )
    classifier, classifier_wall = timed(
        "classifier", ClassifierTrainConfig(run_name=f"classifier-seed{seed}", **common)
    )
    dit, dit_wall = timed(  # the classifier run: its best checkpoint by validation
        "dit", DiTTrainConfig(run_name=f"dit-seed{seed}", classifier_checkpoint=classifier.run_dir, **common)
    )
    return {
        "seed": seed,
        "val_acc": classifier.metrics["val_acc"],
        "test_acc": classifier.metrics["test_acc"],
        "classifier_train_s": train_seconds(classifier.run_dir),
        "classifier_wall_s": classifier_wall,
        "dit_train_s": train_seconds(dit.run_dir),
        "dit_wall_s": dit_wall,
        **{k: dit.metrics[k] for k in ("sample_acc", "fd", "fd_floor", "fd_ratio")},
        "classifier_run": classifier.run_dir,
        "dit_run": dit.run_dir,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| seed | " + " | ".join(header for _, header, _ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [fmt.format(row[field]) for field, _, fmt in COLUMNS]
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    """One line per bar: met on how many seeds, with the worst and the mean value."""
    lines = []
    for name, (field, ok, text) in BARS.items():
        values = [r[field] for r in rows]
        met = sum(ok(v) for v in values)
        verdict = "met" if met == len(values) else "NOT MET"
        lines.append(
            f"{name} {text}: {verdict} on {met}/{len(values)} seeds (values {', '.join(f'{v:.4g}' for v in values)})"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    parser.add_argument(
        "--cpu-threads",
        type=int,
        default=ClassifierTrainConfig().cpu_threads,
        help="torch threads on the CPU (default: the trainers' default; 0: one per core)",
    )
    parser.add_argument("--runs-dir", default="", help="where the runs are written (default: a temporary directory)")
    parser.add_argument("--data-dir", default=default_data_dir(), help="dataset cache (digits needs none)")
    parser.add_argument("--out", default="quality.jsonl", help="JSONL file of results (overwritten)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="tandem-quality-")

    source = source_state()
    print(f"source: {source['tandem_source']} (commit {source['commit'] or 'unknown'}); runs: {args.runs_dir}")
    out = Path(args.out)
    out.write_text("")
    rows = []
    for seed in seeds:
        row = {**one_seed(seed, args), "cpu_threads": args.cpu_threads, **source}
        rows.append(row)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")

    if len(rows) > 1:
        mean = {field: statistics.mean(r[field] for r in rows) for field, _, _ in COLUMNS}
        rows_shown = [*rows, {"seed": "mean", **mean}]
    else:
        rows_shown = rows
    print()
    print(markdown(rows_shown))
    print()
    print("\n".join(verdicts(rows)))
    print(f"\nresults: {out}; runs: {args.runs_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
