"""benchmarks/gpu.py --quick: every step of the lent-GPU benchmark, run on the CPU at tiny sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"
STEPS = ["tandem check twice", "bitwise resume", "throughput", "digits DiT run", "compile start", "2-rank DDP"]


def test_quick_run_writes_its_json_and_markdown(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert report["quick"] is True and report["device"] == "cpu"
    steps = report["steps"]
    assert list(steps) == STEPS
    assert [steps[name]["ok"] for name in STEPS] == [True, True, True, True, None, None]  # no compile, no 2 GPUs
    assert steps["tandem check twice"]["sections"] == {"cpu": True}
    assert steps["bitwise resume"]["detail"] == "parameters bitwise equal after 20 steps"
    models = [(r["model"], r["shape"]) for r in steps["throughput"]["results"]]
    assert models == [("classifier (airbench)", [1, 8, 8]), ("DiT-tiny/4", [1, 8, 8])]
    assert all(r["img_per_s"] > 0 and r["e2e_img_per_s"] > 0 for r in steps["throughput"]["results"])
    assert steps["digits DiT run"]["steps"] == 6 and steps["digits DiT run"]["final_loss"] > 0

    table = (tmp_path / "out" / "gpu.md").read_text().splitlines()
    assert table[2:4] == ["| step | result | seconds | figures |", "|---|---|---:|---|"]
    assert [row.split(" | ")[:2] for row in table[4:]] == [
        ["| tandem check twice", "pass"],
        ["| bitwise resume", "pass"],
        ["| throughput", "pass"],
        ["| digits DiT run", "pass"],
        ["| compile start", "skipped"],
        ["| 2-rank DDP", "skipped"],
    ]
    assert "\n".join(table) in done.stdout  # printed as well
