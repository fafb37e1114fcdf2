"""The Modal app imported from its file, as `modal run modal_app/train.py` imports it, and tiny CPU settings.

Nothing here reaches Modal: Functions are inspected offline and their bodies run in-process (`.local()`).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from support import REPO

MODAL_APP = REPO / "modal_app"
sys.path.insert(0, str(MODAL_APP))  # its helpers import each other by plain name, as under `modal run`

# The flags of a few-second run on digits, CPU, deterministic (the cheapest shapes of each model).
DIT_FLAGS = [
    "--patch-size", "4", "--batch-size", "32", "--steps", "6", "--warmup-steps", "2", "--log-every", "1",
    "--checkpoint-every", "3", "--sample-every", "0", "--samples-per-class", "2", "--sample-steps", "2",
    "--solver", "euler", "--device", "cpu", "--deterministic",
]  # fmt: skip
CLASSIFIER_FLAGS = [
    "--width", "8", "--batch-size", "64", "--warmup-steps", "2", "--log-every", "5",
    "--device", "cpu", "--deterministic", "--no-tta",
]  # fmt: skip


@pytest.fixture
def dit_flags():
    return list(DIT_FLAGS)


@pytest.fixture
def classifier_flags():
    return list(CLASSIFIER_FLAGS)


def import_app():
    spec = importlib.util.spec_from_file_location("train", MODAL_APP / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def target():
    return sys.modules.get("train") or import_app()


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # Two shared cores: one thread per process avoids oversubscription (and is what the checks use).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Fresh data, runs and outputs folders, also as the defaults the flags fall back to."""
    paths = {name: tmp_path / name for name in ("data", "runs", "outputs")}
    monkeypatch.setenv("TANDEM_DATA_DIR", str(paths["data"]))
    monkeypatch.setenv("TANDEM_RUNS_DIR", str(paths["runs"]))
    monkeypatch.chdir(tmp_path)
    return paths


@pytest.fixture
def no_credentials(monkeypatch):
    """As on a machine never logged in to Modal."""
    import modal_login

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    original = modal_login.credentials_source
    monkeypatch.setattr(modal_login, "credentials_source", lambda environ=None, get=None: original({}, lambda k: None))


@pytest.fixture(scope="session")
def checked(target, tmp_path_factory):
    """The check Function's body run once here: (its runs dir, the fingerprint it returned)."""
    import warnings

    runs = tmp_path_factory.mktemp("check-runs")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally")
        return runs, target.check.local("modal-test", str(runs))
