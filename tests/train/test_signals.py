import json
import signal

import pytest

from support import train_in_background
from tandem.train import checkpoint

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(dit_config, runs_dir):
    config = dit_config(run_name="term", steps=100_000, checkpoint_every=0)
    proc = train_in_background("dit", config, until_lines=2)

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out and "stopped at step" in out and "--resume" in out

    (path,) = (runs_dir / "term" / "checkpoints").iterdir()
    state = checkpoint.load(path)
    assert 2 <= state["step"] < 100_000 and path.name == f"step_{state['step']:07d}.pt"
    final = json.loads((runs_dir / "term" / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["final"] and final["status"] == "stopped" and final["step"] == state["step"]
