import json
import os
import signal
import subprocess
import sys
import time

from tandem.train import checkpoint
from tandem.train.config import config_to_argv


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(dit_config, runs_dir):
    config = dit_config(run_name="term", steps=100_000, checkpoint_every=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem", "train", "dit", *config_to_argv(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    metrics = runs_dir / "term" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # training is under way
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out and "stopped at step" in out and "--resume" in out

    (path,) = (runs_dir / "term" / "checkpoints").iterdir()
    state = checkpoint.load(path)
    assert 2 <= state["step"] < 100_000 and path.name == f"step_{state['step']:07d}.pt"
    final = json.loads(metrics.read_text().splitlines()[-1])
    assert final["final"] and final["status"] == "stopped" and final["step"] == state["step"]
