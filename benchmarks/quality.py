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

Bars (on a 2-core CPU, each seed):
    classifier   98% validation accuracy within 4 s of training; test accuracy (of the weights
                 validation chose) >= 99.3%
    DiT          trained in < 5 minutes; sample accuracy >= 99.5%; Frechet distance <= 1.3x its floor

A recipe is varied with `--dit NAME=VALUE` / `--classifier NAME=VALUE` (any setting, as in config.json),
each run against the same seeds, so that a change's effect is measured rather than guessed; `--reuse`
keeps a classifier run already in --runs-dir for the same seed and settings (the DiT's judge).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from throughput import source_state  # benchmarks/ is on sys.path when a script here runs

from tandem.train import run_training
from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig, default_data_dir
from tandem.train.run import RunDir, RunResult

BARS = {  # name: (field, test, text)
    "classifier time to 98%": ("classifier_98_s", lambda v: v <= 4, "<= 4 s"),
    "classifier accuracy": ("test_acc", lambda v: v >= 0.993, ">= 99.3%"),
    "DiT time": ("dit_train_s", lambda v: v < 300, "< 300 s"),
    "sample accuracy": ("sample_acc", lambda v: v >= 0.995, ">= 99.5%"),
    "Frechet ratio": ("fd_ratio", lambda v: v <= 1.3, "<= 1.3x floor"),
}
COLUMNS = [  # field, header, format
    ("val_acc", "classifier best val acc", "{:.2%}"),
    ("test_acc", "classifier test acc", "{:.2%}"),
    ("classifier_98_s", "classifier s to 98% val", "{:.1f}"),
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


def seconds_to(run_dir: str, field: str, value: float) -> float:
    """The run's clock at the first evaluation where `field` reached `value` (inf: never)."""
    return next(
        (
            r["elapsed_s"]
            for r in RunDir(Path(run_dir)).read_metrics()
            if r.get(field, -1) >= value and "elapsed_s" in r
        ),
        float("inf"),
    )


def parse_settings(pairs: list[str], cls) -> dict:
    """NAME=VALUE pairs as the trainer's settings, each value parsed as config.json would hold it."""
    known = {f.name for f in dataclasses.fields(cls)}
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise SystemExit(f"{pair!r}: pass NAME=VALUE with NAME one of {cls.__name__}'s settings")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value  # a plain string, e.g. solver=euler
    return settings


def reusable(run_dir: Path, config) -> bool:
    """A completed run of exactly these settings (its config.json), kept from an earlier call."""
    try:
        record = json.loads((run_dir / "config.json").read_text())
        final = RunDir(run_dir).read_metrics()[-1]
    except (OSError, ValueError, IndexError):
        return False
    wanted = {k: v for k, v in dataclasses.asdict(config).items() if v not in (0, None, "") and k != "resume"}
    recorded = record.get("config", {})
    return final.get("status") == "completed" and all(recorded.get(k) == v for k, v in wanted.items())


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
    tag = args.tag and f"-{args.tag}"
    classifier_config = ClassifierTrainConfig(run_name=f"classifier-seed{seed}", **common, **args.classifier)
    classifier_dir = Path(args.runs_dir) / classifier_config.run_name
    if args.reuse and reusable(classifier_dir, classifier_config):
        final = RunDir(classifier_dir).read_metrics()[-1]
        classifier, classifier_wall = (
            RunResult("classifier", str(classifier_dir), "completed", final["step"], final),
            0.0,
        )
        print(f"reusing {classifier_dir}")
    else:
        classifier, classifier_wall = timed("classifier", classifier_config)
    dit, dit_wall = timed(  # the classifier run: its best checkpoint by validation
        "dit",
        DiTTrainConfig(run_name=f"dit-seed{seed}{tag}", classifier_checkpoint=classifier.run_dir, **common, **args.dit),
    )
    return {
        "seed": seed,
        "val_acc": classifier.metrics["val_acc"],
        "test_acc": classifier.metrics["test_acc"],
        "classifier_98_s": seconds_to(classifier.run_dir, "val_acc", 0.98),
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
    parser.add_argument("--dit", action="append", default=[], metavar="NAME=VALUE", help="a DiT setting changed")
    parser.add_argument(
        "--classifier", action="append", default=[], metavar="NAME=VALUE", help="a classifier setting changed"
    )
    parser.add_argument("--tag", default="", help="suffix of the DiT run names (variants side by side)")
    parser.add_argument("--reuse", action="store_true", help="keep a completed classifier run of the same settings")
    args = parser.parse_args(argv)
    args.dit = parse_settings(args.dit, DiTTrainConfig)
    args.classifier = parse_settings(args.classifier, ClassifierTrainConfig)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="tandem-quality-")

    source = source_state()
    print(f"source: {source['tandem_source']} (commit {source['commit'] or 'unknown'}); runs: {args.runs_dir}")
    print(f"changed: DiT {args.dit or 'nothing'}; classifier {args.classifier or 'nothing'}")
    out = Path(args.out)
    out.write_text("")
    rows = []
    for seed in seeds:
        row = {**one_seed(seed, args), "dit_changes": args.dit, "classifier_changes": args.classifier}
        row |= {"cpu_threads": args.cpu_threads, **source}
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
