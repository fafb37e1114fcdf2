"""The code paths a GPU takes, exercised on the CPU so that they cannot rot unnoticed: both trainers under
bf16 autocast (the CUDA branch of tandem.train.device.autocast, taken here with the CPU's autocast) and
with --compile (torch.compile, inductor's C++ backend), a few steps each at the tiniest shapes."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

TRAINERS = ["dit", "classifier"]


def losses(result) -> list[float]:
    lines = (json.loads(line) for line in open(f"{result.run_dir}/metrics.jsonl"))
    return [r["loss"] for r in lines if "loss" in r]


def make_config(kind, dit_config, classifier_config, **overrides):
    if kind == "dit":
        return dit_config(steps=3, **overrides)
    return classifier_config(epochs=1, **overrides)


@pytest.mark.parametrize("kind", TRAINERS)
def test_bf16_autocast_trains(kind, dit_config, classifier_config, monkeypatch):
    trainer = importlib.import_module(f"tandem.train.{kind}")
    entered, dtypes = [], set()

    def cpu_bf16(device, enabled=True):  # what the trainers get on CUDA, on the CPU
        entered.append(enabled)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)

    def record(module, args, output):
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and isinstance(output, torch.Tensor):
            dtypes.add(output.dtype)

    monkeypatch.setattr(trainer, "autocast", cpu_bf16)  # the trainer's step (and the classifier's evaluation)
    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = trainer.train(make_config(kind, dit_config, classifier_config, run_name=f"{kind}-bf16"))
    finally:
        hook.remove()
    assert result.status == "completed"
    assert entered and all(entered)  # --amp is on by default
    assert torch.bfloat16 in dtypes  # the matmuls and convolutions ran in bf16
    assert all(math.isfinite(loss) for loss in losses(result))


@pytest.mark.parametrize("kind", TRAINERS)
def test_compile_trains_as_eager_does(kind, dit_config, classifier_config):
    trainer = importlib.import_module(f"tandem.train.{kind}")
    torch._dynamo.reset()
    compiled = trainer.train(make_config(kind, dit_config, classifier_config, compile=True, run_name="compiled"))
    eager = trainer.train(make_config(kind, dit_config, classifier_config, run_name="eager"))
    assert compiled.status == eager.status == "completed"
    # Inductor fuses and reorders float arithmetic: the same run to within rounding, not bitwise.
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3)
    assert len(losses(compiled)) >= 3
    # The first step waited for the compiler: logged, and left out of img/s.
    assert compiled.timing["compile_s"] > 0 and eager.timing["compile_s"] == 0
    records = [json.loads(line) for line in open(f"{compiled.run_dir}/metrics.jsonl")]
    assert [r["step"] for r in records if "compile_s" in r] == [1]
