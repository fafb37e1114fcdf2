"""What share of the default DiT run is not training: the quick start (`tandem train dit --dataset
digits`, every other setting its default) and where its loop's time went, by the run's own timing record
(the `timing` of its final metrics.jsonl record).

    python benchmarks/overhead.py --device cpu            # about a minute per run on 2 cores

The share is (checkpoint s + sample s) / loop s: the time the training thread spent on checkpoints and
mid-run sample grids (the final grid and evaluation come after the loop). Grids are drawn on a worker
thread and checkpoints written by one, so the training thread pays for copying the weights and for
waiting, if the work is not done by the next checkpoint. With `--against-no-grids` the same run is
repeated with `sample_every=0`, and the difference in loop time (what the grids cost the run, contention
for the cores included) is shown beside the record's figure.

Goal (2 cores): the share <= 3%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from throughput import source_state  # benchmarks/ is on sys.path when a script here runs

from tandem.train import run_training
from tandem.train.config import DiTTrainConfig

GOAL = 0.03


def one_run(runs_dir: str, name: str, device: str, **changes) -> dict:
    config = DiTTrainConfig(dataset="digits", device=device, runs_dir=runs_dir, run_name=name, **changes)
    result = run_training("dit", config)
    if result.status != "completed":
        raise SystemExit(f"run {result.run_dir} ended {result.status}")
    timing = result.timing
    spent = timing["checkpoint_s"] + timing["sample_s"]
    return {"run": name, **changes, **timing, "overhead_s": spent, "share": spent / timing["loop_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    parser.add_argument("--against-no-grids", action="store_true", help="also the same run without mid-run grids")
    parser.add_argument("--out", default="overhead.jsonl", help="JSONL file of results (overwritten)")
    args = parser.parse_args(argv)
    source = source_state()
    print(f"source: {source['tandem_source']} (commit {source['commit'] or 'unknown'})")
    with tempfile.TemporaryDirectory() as runs_dir:
        rows = [one_run(runs_dir, "default", args.device)]
        if args.against_no_grids:
            rows.append(one_run(runs_dir, "no-grids", args.device, sample_every=0))
    Path(args.out).write_text("".join(json.dumps({**r, **source}) + "\n" for r in rows))

    print("\n| run | loop s | checkpoint s | sample s | share | end-to-end img/s | step img/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['loop_s']:.1f} | {r['checkpoint_s']:.2f} | {r['sample_s']:.2f} | {r['share']:.1%} | "
            f"{r['end_to_end_img_per_s']:,.0f} | {r['step_img_per_s']:,.0f} |"
        )
    default = rows[0]
    print(f"\nshare of the default run not training: {default['share']:.1%} (goal <= {GOAL:.0%})")
    if len(rows) > 1:
        extra = default["loop_s"] - rows[1]["loop_s"]
        print(f"loop time with grids minus without: {extra:+.1f} s ({extra / default['loop_s']:+.1%})")
    return 0 if default["share"] <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
