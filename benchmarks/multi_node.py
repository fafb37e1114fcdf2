"""One DiT run on 1 node x 2 ranks and on 2 nodes x 1 rank (this machine, 127.0.0.1): same losses, and
the time per step of each.

    python benchmarks/multi_node.py                  # 60 steps of the default tiny DiT on digits, CPU
    python benchmarks/multi_node.py --steps 200 --json

Both runs go through `tandem train` with the launch flags (torchrun underneath, gloo ranks on the CPU,
one thread each). The time per step is the run's own timing record (training steps only, after the first
10, which warm up); the losses are compared bit for bit. A 2-node run on one machine pays the TCP
rendezvous and gloo over loopback instead of shared memory: what real nodes pay for the network needs
real nodes (and NCCL on GPUs) to measure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--device", "cpu", "--deterministic", "--cpu-threads", "1", "--loggers", "none", "--sample-every", "0",
         "--checkpoint-every", "0", "--log-every", "1"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(runs: Path, name: str, steps: int, layouts: list[list[str]]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "tandem", "train", "dit", "--runs-dir", str(runs), "--data-dir", str(runs / "data"),
            "--run-name", name, "--steps", str(steps), *FLAGS]  # fmt: skip
    procs = [subprocess.Popen([*base, *layout], env=env, stdout=subprocess.DEVNULL) for layout in layouts]
    if any(p.wait() for p in procs):
        raise SystemExit(f"{name}: a node failed")
    records = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    steps_at = [(r["step"], r["elapsed_s"]) for r in records if "loss" in r and "elapsed_s" in r]
    (s0, t0), (s1, t1) = next(x for x in steps_at if x[0] >= 10), steps_at[-1]
    return {"losses": [r["loss"] for r in records if "loss" in r], "s_per_step": (t1 - t0) / (s1 - s0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        one = train(runs, "one-node", args.steps, [["--gpus", "2"]])
        master = f"127.0.0.1:{free_port()}"
        two = train(runs, "two-nodes", args.steps,
                    [["--nodes", "2", "--node-rank", str(r), "--master-addr", master] for r in (0, 1)])  # fmt: skip
    result = {
        "steps": args.steps,
        "losses_identical": one["losses"] == two["losses"],
        "s_per_step_1x2": round(one["s_per_step"], 4),
        "s_per_step_2x1": round(two["s_per_step"], 4),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"losses over {args.steps} steps: {'bitwise identical' if result['losses_identical'] else 'DIFFERENT'}")
    print(f"seconds per step: 1 node x 2 ranks {result['s_per_step_1x2']}, 2 nodes x 1 rank {result['s_per_step_2x1']}")


if __name__ == "__main__":
    main()
