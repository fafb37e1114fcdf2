"""Start-up time of the small `tandem` commands, and which heavy modules they import.

    python benchmarks/cli_startup.py                 # each command 5 times, median wall seconds
    python benchmarks/cli_startup.py --repeat 9 --json
    python benchmarks/cli_startup.py --sample-run runs/<dit-run>   # also time a whole `tandem sample`

Each command runs in a fresh interpreter (`python -m tandem ...`), as a user's shell runs it; the figure
is the median wall time over --repeat runs after one untimed warm-up run (which fills the OS file cache).
Alongside, one extra run per command reports which of torch, torchvision, matplotlib, numpy, tensorboard
and wandb ended up in sys.modules. Target: every `--help` under 2 s. docs/benchmarks.md records the
measured figures. With --sample-run, `tandem sample --run DIR --device cpu` (the run's own sampling
settings, 8 per class) is timed end to end as well, writing its grids to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "tandem --help": ["--help"],
    "tandem --version": ["--version"],
    "tandem train dit --help": ["train", "dit", "--help"],
    "tandem sample --help": ["sample", "--help"],
    "tandem check --help": ["check", "--help"],
    "tandem doctor --help": ["doctor", "--help"],
    "tandem doctor": ["doctor"],
}
HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "tensorboard", "wandb")

# Runs the CLI as `python -m tandem` does, then reports the heavy modules it imported.
PROBE = """
import runpy, sys, json, atexit
atexit.register(lambda: sys.__stderr__.write("HEAVY " + json.dumps(
    [m for m in {heavy!r} if m in sys.modules]) + "\\n"))
sys.argv = ["tandem", *{argv!r}]
runpy.run_module("tandem", run_name="__main__")
"""


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tandem", *argv], capture_output=True, check=False)
    return time.perf_counter() - start


def heavy_imports(argv: list[str]) -> list[str]:
    code = PROBE.format(heavy=HEAVY, argv=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.startswith("HEAVY ")]
    return json.loads(lines[-1][6:]) if lines else ["?"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (median reported)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--sample-run", metavar="DIR", help="a DiT run directory: also time `tandem sample` on it")
    args = parser.parse_args()
    commands = dict(COMMANDS)
    scratch = tempfile.TemporaryDirectory(prefix="tandem-startup-")
    if args.sample_run:
        for i in range(args.repeat + 2):  # a new --out each time: tandem never replaces a file
            out = Path(scratch.name) / f"grid{i}.png"
            commands.setdefault("tandem sample (cpu)", []).append(
                ["sample", "--run", args.sample_run, "--device", "cpu", "--out", str(out)]
            )
    results = {}
    for name, argv in commands.items():
        runs = argv if isinstance(argv[0], list) else [argv] * (args.repeat + 2)
        wall(runs[0])  # warm-up: the OS file cache
        times = [wall(a) for a in runs[1:-1]]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "imports": heavy_imports(runs[-1])}
    scratch.cleanup()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'command':<26} {'median s':>9} {'min s':>7}  heavy modules imported")
        for name, r in results.items():
            print(f"{name:<26} {r['median_s']:>9.2f} {r['min_s']:>7.2f}  {', '.join(r['imports']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
