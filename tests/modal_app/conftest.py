"""The Modal app as `modal run modal_app/train.py` reaches it, and tiny CPU settings.

Nothing here reaches Modal. `modal_cli` drives Modal's own `modal run` click group with only the network
boundary replaced: starting the app, `.remote` / `.spawn` of Functions (recorded, answered here), and the
runs Volume's reads (served from a folder). Function bodies run in-process with `.local()`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from support import REPO

TRAIN_PY = REPO / "modal_app" / "train.py"

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


def credentials(monkeypatch, present: bool) -> None:
    """As on a machine logged in to Modal (a token in the environment), or never logged in."""
    import modal.config

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    if present:
        monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
        monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    else:
        monkeypatch.setenv("MODAL_CONFIG_PATH", "/nonexistent/.modal.toml")
        monkeypatch.setattr(modal.config.config, "get", lambda key, use_env=True: None)


@pytest.fixture
def no_credentials(monkeypatch):
    credentials(monkeypatch, False)


@pytest.fixture
def with_credentials(monkeypatch):
    credentials(monkeypatch, True)


def raw(obj):
    """The client's inner object behind a public one (private to the pinned client)."""
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


@dataclass
class Sent:
    """One call that would have gone to Modal."""

    how: str  # "remote" or "spawn"
    function: str
    gpu: str  # Modal's "TYPE[:COUNT]", as the options carry it
    timeout: int
    cpu: float
    memory: int
    args: tuple
    cluster: tuple | None = None  # (nodes, rdma) of a clustered Function, as Modal's FunctionInfo says

    @classmethod
    def of(cls, how: str, function, args: tuple) -> Sent:
        options = raw(function)._options
        gpu = options.resources.gpu_config
        spec = gpu.gpu_type if gpu.count == 1 else f"{gpu.gpu_type}:{gpu.count}"
        resources = options.resources
        cluster = function.info().cluster_info
        return cls(
            how, raw(function)._tag, spec, options.timeout_secs, resources.milli_cpu / 1000, resources.memory_mb, args,
            (cluster.size, cluster.rdma) if cluster else None,
        )  # fmt: skip


@dataclass
class FakeModal:
    """What `modal_cli` records and how it answers: a runs Volume folder and canned results."""

    volume: Path
    sent: list[Sent] = field(default_factory=list)
    results: list = field(default_factory=list)  # answers to .remote, in order (default: made up below)

    def answer(self, sent: Sent):
        if self.results:
            return self.results.pop(0)
        if sent.function.startswith("train_"):
            config = sent.args[-3]  # (kind,) first on a cluster's Function
            run = self.volume / config["run_name"]
            (run / "samples").mkdir(parents=True, exist_ok=True)
            (run / "config.json").write_text(json.dumps(config))
            (run / "metrics.jsonl").write_text('{"step": 1}\n')
            (run / "samples" / "step_0000001.png").write_bytes(b"png")
            return {
                "kind": sent.args[0] if sent.cluster else sent.function[6:],
                "run_dir": f"/runs/{config['run_name']}",
                "status": "completed",
                "step": 1,
            }
        if sent.function == "check":
            return {"label": sent.args[0], "environment": {}}
        return {"status": "completed"}


@pytest.fixture
def modal_cli(monkeypatch, tmp_path):
    """invoke(words) runs `modal run <words>` through Modal's CLI here: returns (exit code, output)."""
    import modal
    import modal.cli.run as modal_run
    from click.testing import CliRunner
    from modal.volume import FileEntry, FileEntryType

    fake = FakeModal(tmp_path / "volume")
    fake.volume.mkdir()

    @contextlib.contextmanager
    def run_app(app, **kwargs):  # the app starts on Modal, and gets an id
        raw(app)._app_id = "ap-test"
        yield app

    def remote(self, *args, **kwargs):
        fake.sent.append(sent := Sent.of("remote", self, args))
        return fake.answer(sent)

    def spawn(self, *args, **kwargs):
        fake.sent.append(Sent.of("spawn", self, args))
        return type("Call", (), {"object_id": "fc-test"})()

    def listdir(self, path, recursive=False):  # a folder lists what it holds; a file path, that one file
        base = fake.volume / path.lstrip("/")
        if not base.exists():
            raise modal.exception.NotFoundError(f"No such file or directory: {path}")
        found = [base] if base.is_file() else base.rglob("*") if recursive else base.iterdir()
        return [
            FileEntry(
                p.relative_to(fake.volume).as_posix(),
                FileEntryType.FILE if p.is_file() else FileEntryType.DIRECTORY,
                int(p.stat().st_mtime),
                p.stat().st_size if p.is_file() else 0,
            )
            for p in found
        ]

    def read_file(self, path):
        yield (fake.volume / path).read_bytes()

    monkeypatch.setattr(modal_run, "run_app", run_app)
    monkeypatch.setattr(modal.Function, "remote", remote)
    monkeypatch.setattr(modal.Function, "spawn", spawn)
    monkeypatch.setattr(modal.Volume, "listdir", listdir)
    monkeypatch.setattr(modal.Volume, "read_file", read_file)
    monkeypatch.setattr(sys, "path", list(sys.path))  # Modal's import puts the file's folder first

    def invoke(words: list[str]) -> tuple[int, str]:
        # Each `modal run` is a fresh process: the entry file and its package are imported anew.
        for name in [m for m in sys.modules if m == "train" or m == "modal_app" or m.startswith("modal_app.")]:
            monkeypatch.delitem(sys.modules, name)
        words = [str(TRAIN_PY) if word == "modal_app/train.py" else word for word in words]
        result = CliRunner().invoke(modal_run.run, words, catch_exceptions=False)
        return result.exit_code, result.output

    fake.invoke = invoke
    return fake


@pytest.fixture(scope="session")
def checked(tmp_path_factory):
    """The check Function's body run once here: (its runs dir, the fingerprint it returned)."""
    import warnings

    from modal_app import functions

    runs = tmp_path_factory.mktemp("check-runs")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*executing locally")
        return runs, functions.check.local("modal-test", str(runs))


@pytest.fixture
def in_a_container(monkeypatch):
    """A Function body as Modal runs it: not local, so it keeps a deadline and commits the Volumes (each
    commit replaced and recorded by its time)."""
    import time

    import modal

    commits = []
    monkeypatch.setattr(modal, "is_local", lambda: False)
    monkeypatch.setattr(modal.Volume, "commit", lambda self: commits.append(time.monotonic()))
    return commits
