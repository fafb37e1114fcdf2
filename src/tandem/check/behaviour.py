"""The behaviour half of a fingerprint: both trainers, a few fixed-seed steps on fixed data.

The runs go through `run_training`, the entry every target calls, with a tiny model, fp32, deterministic
kernels and one thread, so two environments that agree produce the same numbers.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import torch

from tandem.models import DiTConfig, build_classifier, build_dit
from tandem.train import run_training
from tandem.train.checkpoint import content_digest
from tandem.train.checkpoint import load as load_checkpoint
from tandem.train.config import CONFIGS
from tandem.train.run import RunDir

# Tiny, fp32, deterministic: a few steps that any environment can run in seconds.
COMMON = dict(
    run_name="check",
    deterministic=True,
    amp=False,
    compile=False,  # eager on every device: seconds, and the same kernels as the CPU's reference
    seed=0,
    log_every=1,
    checkpoint_every=0,
    warmup_steps=2,
    loggers="none",
)
SHORT_RUNS = {
    "classifier": dict(epochs=1, batch_size=256, width=16, tta=False),
    "dit": dict(steps=6, batch_size=64, sample_every=0, samples_per_class=1, sample_steps=2),
}


def collect_behaviour(device: str) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: same CPU + same libraries => same bits
    try:
        return {kind: _trainer_behaviour(kind, device) for kind in SHORT_RUNS} | {"forward": forward_digests(device)}
    finally:
        torch.set_num_threads(threads)


def _trainer_behaviour(kind: str, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="tandem-check-") as runs:
        config = CONFIGS[kind](runs_dir=runs, device=device, **COMMON, **SHORT_RUNS[kind])
        # The inner run's log (a temporary run directory, per-step lines) says nothing about the
        # fingerprint; it is shown only when the run fails.
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = run_training(kind, config)
        except BaseException:
            sys.stderr.write(log.getvalue())
            raise
        records = RunDir(Path(result.run_dir)).read_metrics()
        losses = [r["loss"] for r in records if "loss" in r and "step" in r]
        state = load_checkpoint(Path(result.checkpoint))
        return {"losses": losses, "params_sha256": tensors_digest(state["model"])}


def forward_digests(device: str) -> dict:
    """Freshly initialised models on a fixed input: catches init and kernel differences without training."""
    out = {}
    torch.manual_seed(0)
    classifier = build_classifier("airbench", num_classes=10, in_channels=1, image_size=8, width=16).to(device).eval()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        out["classifier"] = _output(classifier(x))
    torch.manual_seed(0)
    dit = build_dit(DiTConfig(size="tiny", image_size=8, patch_size=2, in_channels=1, num_classes=10)).to(device).eval()
    # adaLN-Zero makes a fresh DiT output zeros; perturb deterministically so the pass means something.
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())).to(device) * 0.02)
        t = torch.linspace(0.05, 0.95, 16, device=device)
        y = torch.arange(16, device=device) % 10
        out["dit"] = _output(dit(x, t, y))
    return out


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The bits of every tensor, by name (the checkpoints' own content digest)."""
    return "sha256:" + content_digest({k: v for k, v in sorted(tensors.items()) if isinstance(v, torch.Tensor)})


def _output(y: torch.Tensor) -> dict:
    y = y.float().cpu()
    return {
        "sha256": tensors_digest({"y": y}),
        "sum": float(y.double().sum()),
        "abs_sum": float(y.double().abs().sum()),
    }
