"""Start-up time of the `tandem` commands: the small ones end to end, and `train` and `sample` up to the
moment their work begins, with which heavy modules each imported.

    python benchmarks/cli_startup.py                 # each command 5 times, median wall seconds
    python benchmarks/cli_startup.py --repeat 9 --json

Each command runs in a fresh interpreter (`python -m tandem ...`), as a user's shell runs it; the figure
is the median wall time over --repeat runs after one untimed warm-up run (which fills the OS file cache).
`train` and `sample` are timed from the start of the process to the line that says their work is under
way (timing stops there and the process is stopped):
    tandem train dit / classifier   "device: ...", its first line, once the run is claimed and its
                                    device chosen; and "step 1/N ...", printed when the first optimizer
                                    step has run (digits, CPU, the default loggers: what a default run opens)
    tandem sample                   "device: ...", printed when the model is loaded and sampling begins
                                    (a one-step DiT run made first in a temporary folder)
`import torch` is timed too, the floor no command that samples goes below, and `import torch` with an
optimizer made, the floor of training: torch.optim's first optimizer imports torch._dynamo.
Alongside, one extra run per small command reports which of torch, torchvision, matplotlib, numpy,
tensorboard and wandb ended up in sys.modules. Targets: every `--help` under 2 s; `train` and `sample`
before their work under 2 s on 2 cores. docs/benchmarks.md records the measured figures.
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
    "tandem runs": ["runs"],
    "tandem check --help": ["check", "--help"],
    "tandem doctor --help": ["doctor", "--help"],
    "tandem doctor": ["doctor"],
}
HEAVY = ("torch", "torchvision", "matplotlib", "numpy", "tensorboard", "wandb")
QUICK = ["--device", "cpu", "--log-every", "1", "--checkpoint-every", "0"]

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


def until(argv: list[str], prefix: str) -> float:
    """Seconds from starting `tandem ARGV` to its first stdout line starting with `prefix`; then stopped."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tandem", *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in process.stdout:
            if line.startswith(prefix):
                return time.perf_counter() - start
        raise SystemExit(f"`tandem {' '.join(argv)}` ended without a line starting {prefix!r}")
    finally:
        process.kill()
        process.wait()


FLOORS = {  # what torch itself costs before any command of ours can work
    'python -c "import torch"': "import torch",
    "import torch, make an optimizer": "import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)])",
}


def python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def heavy_imports(argv: list[str]) -> list[str]:
    code = PROBE.format(heavy=HEAVY, argv=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = [line for line in done.stderr.splitlines() if line.startswith("HEAVY ")]
    return json.loads(lines[-1][6:]) if lines else ["?"]


def timings(measure, repeat: int) -> dict:
    measure()  # warm-up: the OS file cache
    times = [measure() for _ in range(repeat)]
    return {"median_s": statistics.median(times), "min_s": min(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command (median reported)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="tandem-startup-")
    runs = Path(scratch.name)
    results = {}
    for name, argv in COMMANDS.items():
        argv = [*argv, "--runs-dir", str(runs)] if argv == ["runs"] else argv
        results[name] = {**timings(lambda argv=argv: wall(argv), args.repeat), "imports": heavy_imports(argv)}
    for name, code in FLOORS.items():
        results[name] = {**timings(lambda code=code: python(code), args.repeat), "imports": ["torch"]}
    for kind in ("dit", "classifier"):
        argv = ["train", kind, *QUICK, "--steps", "2", "--runs-dir", str(runs)]
        results[f"tandem train {kind} (to its first line)"] = timings(lambda a=argv: until(a, "device: "), args.repeat)
        results[f"tandem train {kind} (to its first step)"] = timings(lambda a=argv: until(a, "step 1/"), args.repeat)
    made = ["train", "dit", *QUICK, "--steps", "1", "--run-name", "sampled", "--runs-dir", str(runs)]
    made += ["--samples-per-class", "1", "--sample-steps", "1", "--loggers", "none"]
    subprocess.run([sys.executable, "-m", "tandem", *made], capture_output=True, check=True)
    argv = ["sample", "--run", str(runs / "sampled"), "--device", "cpu", "--force"]
    results["tandem sample (to its first sampling step)"] = timings(lambda: until(argv, "device: "), args.repeat)
    scratch.cleanup()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'command':<44} {'median s':>9} {'min s':>7}  heavy modules imported")
        for name, r in results.items():
            print(f"{name:<44} {r['median_s']:>9.2f} {r['min_s']:>7.2f}  {', '.join(r.get('imports', [])) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
