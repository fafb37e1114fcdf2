"""benchmarks/reference_step.py: tandem's step against a plain one, from the same weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def reference_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import reference_step

    return reference_step


@pytest.mark.parametrize("trainer", ["dit", "classifier"])
def test_both_steps_train_the_same_model_from_the_same_weights(reference_step, trainer):
    plain, ours, plain_model, our_model = reference_step.builds(trainer, torch.device("cpu"), 16)
    assert plain_model is not our_model
    before = {k: v.clone() for k, v in our_model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in plain_model.state_dict().items())
    plain(), ours()  # each trains its own copy
    for model in (plain_model, our_model):
        after = model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert all(torch.isfinite(v).all() for v in after.values())


def test_the_command_writes_its_figures(tmp_path):
    out = tmp_path / "ref.json"
    cmd = [sys.executable, "reference_step.py", "--rounds", "1", "--steps", "2", "--out", str(out)]
    done = subprocess.run(cmd, cwd=BENCHMARKS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert set(figures) == {"dit", "classifier"}
    assert all(f["plain_ms"] > 0 and f["tandem_ms"] > 0 and f["speedup"] > 0 for f in figures.values())
    assert [line.split(":")[0].strip() for line in done.stdout.splitlines()[1:]] == ["dit", "classifier"]
