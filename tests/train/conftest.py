"""Small, fast, deterministic training settings for tests (CPU, digits, the smallest model shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tandem.train.config import ClassifierTrainConfig, DiTTrainConfig
from tandem.train.flags import config_to_argv

REPO = Path(__file__).resolve().parents[2]

FAST_DIT = dict(
    patch_size=4,  # 4 tokens per 8x8 digit: the cheapest DiT
    batch_size=32,
    steps=6,
    warmup_steps=2,
    log_every=1,
    checkpoint_every=0,
    sample_every=0,
    samples_per_class=2,
    sample_steps=2,
    solver="euler",
    device="cpu",
    deterministic=True,
)
FAST_CLASSIFIER = dict(
    width=8,
    batch_size=256,  # 5 steps per epoch on digits
    epochs=2,
    warmup_steps=2,
    log_every=1,
    checkpoint_every=0,
    device="cpu",
    deterministic=True,
)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and a test machine is usually shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def dit_config(runs_dir, data_dir):
    def make(**overrides) -> DiTTrainConfig:
        return DiTTrainConfig(**{**FAST_DIT, "runs_dir": str(runs_dir), "data_dir": str(data_dir), **overrides})

    return make


@pytest.fixture
def classifier_config(runs_dir, data_dir):
    def make(**overrides) -> ClassifierTrainConfig:
        return ClassifierTrainConfig(
            **{**FAST_CLASSIFIER, "runs_dir": str(runs_dir), "data_dir": str(data_dir), **overrides}
        )

    return make


@pytest.fixture
def fast_flags(dit_config, classifier_config):
    """The fast test settings as flags: every field of the config, as Docker or Modal would pass them."""

    def make(kind: str = "dit", **overrides) -> list[str]:
        config = dit_config(**overrides) if kind == "dit" else classifier_config(**overrides)
        return config_to_argv(config)

    return make


@pytest.fixture
def flags():
    return as_flags


@pytest.fixture
def states_equal():
    return assert_states_equal


def as_flags(**settings) -> list[str]:
    """--name value flags for the CLI (bools as --flag / --no-flag)."""
    argv = []
    for name, value in settings.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            argv += [f"--{flag}", str(value)]
    return argv


def assert_states_equal(a: dict, b: dict, where: str = "") -> None:
    """Every tensor in two nested states is bitwise equal (torch.equal), every other value equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"keys differ at {where}"
        for key in a:
            assert_states_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_states_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{a!r} != {b!r} at {where}"
