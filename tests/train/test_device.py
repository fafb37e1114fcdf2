import os
import random

import numpy as np
import pytest
import torch

from tandem.errors import UsageError
from tandem.train import device as dev


def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    no_accelerators(monkeypatch)
    device, why = dev.choose_device("auto")
    assert device == torch.device("cpu") and "no CUDA" in why

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    device, why = dev.choose_device("auto")
    assert device == torch.device("mps") and "MPS" in why

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"GPU{i}")
    device, why = dev.choose_device("auto", local_rank=1)
    assert device == torch.device("cuda", 1) and "GPU1" in why


def test_forced_device(monkeypatch):
    no_accelerators(monkeypatch)
    assert dev.choose_device("cpu") == (torch.device("cpu"), "forced by --device")
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(UsageError, match=f"--device {name}"):
            dev.choose_device(name)
    with pytest.raises(UsageError, match="--device"):
        dev.choose_device("banana")


def test_forced_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert dev.choose_device("cuda")[0] == torch.device("cuda", 0)
    with pytest.raises(UsageError, match="only 1 CUDA device"):
        dev.choose_device("cuda:3")


def test_seed_everything_seeds_every_library():
    dev.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1))
    dev.seed_everything(123)
    assert a == (random.random(), np.random.rand(), torch.rand(1))


def test_derive_seed_gives_independent_reproducible_streams():
    # sha256 of "0/noise/0", its first 8 bytes little-endian, 63 bits: fixed forever (checkpoints hold streams)
    assert dev.derive_seed(0, "noise", 0) == 7515631026450827910
    seeds = {dev.derive_seed(s, name, r) for s in (0, 1) for name in ("noise", "data") for r in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


def test_deterministic_mode_sets_the_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        dev.configure_determinism(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        dev.configure_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        dev.configure_determinism(False)
        torch.set_float32_matmul_precision("highest")


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_bf16_on_cuda_only():
    with dev.autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    assert isinstance(dev.autocast(torch.device("cuda")), torch.autocast)
    assert not isinstance(dev.autocast(torch.device("cuda"), enabled=False), torch.autocast)
