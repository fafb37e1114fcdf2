"""Where training runs (CUDA, then Apple MPS, then CPU), how it is seeded, and how deterministic it is."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random

import numpy as np
import torch

from tandem.errors import UsageError


def choose_device(requested: str = "auto", local_rank: int = 0) -> tuple[torch.device, str]:
    """The device to train on and one line saying why it was chosen."""
    if requested == "auto":
        if torch.cuda.is_available():
            index = local_rank % torch.cuda.device_count()
            return torch.device("cuda", index), f"CUDA is available ({torch.cuda.get_device_name(index)})"
        if torch.backends.mps.is_available():
            return torch.device("mps"), "Apple MPS is available and CUDA is not"
        return torch.device("cpu"), "no CUDA or Apple MPS device was found"

    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UsageError(f"--device {requested!r} is unknown; use auto, cuda, cuda:N, mps or cpu") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {requested}: CUDA is not available here; use --device auto or cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        elif device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) here; pick a smaller index"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {requested}: Apple MPS is not available here; use --device auto or cpu")
    elif device.type not in ("cuda", "mps", "cpu"):
        raise UsageError(f"--device {requested!r} is unsupported; use auto, cuda, cuda:N, mps or cpu")
    return device, "forced by --device"


def derive_seed(seed: int, *names: object) -> int:
    """An independent 63-bit seed for each named stream, e.g. derive_seed(seed, "noise", rank)."""
    digest = hashlib.sha256("/".join(map(str, (seed, *names))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def configure_determinism(deterministic: bool) -> None:
    """Deterministic kernels, or the fastest ones (cuDNN autotuning, TF32 matmuls) otherwise."""
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before the first matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # setting it imports the compiler: 1.5 s
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.set_float32_matmul_precision("highest" if deterministic else "high")


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; elsewhere (CPU, MPS) full precision."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
