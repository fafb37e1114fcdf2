"""More than one GPU: the Function runs `torchrun -m tandem train ...` and reads the result from the run dir.
Here on CPU: two ranks over gloo."""

from __future__ import annotations

import pytest
from modal_flags import build_parser
from modal_launch import training_config


@pytest.mark.filterwarnings("ignore:.*executing locally")
def test_two_ranks_through_torchrun(target, dirs, classifier_flags, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    parser = build_parser(target.settings.modal_gpu, target.TRAIN_TIMEOUT, target.SHORT_TIMEOUT)
    args = parser.parse_args(["classifier", *classifier_flags, "--epochs", "1", "--run-name", "ddp", "--gpus", "2"])
    result = target.train_classifier.local(training_config(target, args, "local").__dict__, 2)
    assert result["status"] == "completed"
    assert result["run_dir"] == str(dirs["runs"] / "ddp")
    assert result["checkpoint"].endswith(f"step_{result['step']:07d}.pt")
    assert "test_acc" in result["metrics"]
    config = (dirs["runs"] / "ddp" / "config.json").read_text()
    assert '"world_size": 2' in config
