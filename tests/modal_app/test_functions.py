"""The app, read offline: the shared image, each Function's GPU, CPU, memory, Volumes, timeout, retries and
containers, and what the container imports (only what Modal mounts, and the image's project)."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys

import pytest

from modal_app import functions
from support import REPO
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.settings import load_project

FUNCTIONS = ("train_classifier", "train_dit", "sample", "check")


def raw(obj):
    """The client's inner object behind a public one (private to the pinned client)."""
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def definition(function) -> dict:
    """What the client sends Modal for a Function, read from its loader: fails loudly when a new client
    stores it differently."""
    scope = inspect.getclosurevars(raw(function)._load).nonlocals
    missing = {"timeout", "retry_policy", "single_use_containers", "cpu", "memory", "gpu", "info"} - set(scope)
    assert not missing, f"this modal client keeps {missing} elsewhere; update this helper"
    return scope


def test_the_settings_block_holds_the_reservation():
    s = load_project(REPO).settings
    assert (s.modal_gpu, s.modal_cpu, s.modal_memory, s.threads) == ("H100", 4.0, 16384, 4)


def test_every_function_runs_on_the_shared_image():
    version = load_project(REPO).settings.modal_builder_version
    shared = modal_layers(build_modal_image(load_project(REPO)), version)
    for name in FUNCTIONS:
        assert modal_layers(getattr(functions, name)._spec_.image, version) == shared, name


@pytest.mark.parametrize(
    ("name", "timeout", "single_use"),
    [("train_classifier", 14400, True), ("train_dit", 14400, True), ("sample", 1800, False), ("check", 1800, False)],
)
def test_function_options(name, timeout, single_use):
    function = getattr(functions, name)
    scope = definition(function)
    assert (scope["gpu"], scope["cpu"], scope["memory"], scope["timeout"]) == ("H100", 4.0, 16384, timeout)
    assert scope["single_use_containers"] is single_use  # a retry never lands beside an old attempt
    policy = scope["retry_policy"]
    assert (policy.retries, policy.initial_delay_ms, policy.backoff_coefficient) == (3, 10_000, 2.0)
    volumes = function._spec_.volumes
    assert set(volumes) == {"/data", "/runs"}
    assert volumes["/data"] is raw(functions.data_volume) and volumes["/runs"] is raw(functions.runs_volume)


def test_with_options_keeps_the_reservation():
    from modal_app.resources import placement

    place = placement("a100-80gb", 4, 1234, functions.settings)
    options = raw(functions.train_dit.with_options(**place.options()))._options
    gpu = options.resources.gpu_config
    assert (gpu.gpu_type, gpu.count, options.timeout_secs) == ("A100-80GB", 4, 1234)
    assert (options.resources.milli_cpu, options.resources.memory_mb) == (4000, 16384)


def mounted_package(function) -> dict[str, str]:
    """remote path -> local file, for the source Modal mounts with the Function (include_source)."""
    files = {}
    for mount in function._spec_.mounts:
        for entry in raw(mount)._entries or ():  # the client mount is looked up by name
            if type(entry).__name__ == "_MountedPythonModule":
                files.update({str(remote): str(local) for local, remote in entry.get_files_to_upload()})
    return files


def test_modal_mounts_the_whole_package_and_imports_the_functions_from_it():
    scope = definition(functions.train_dit)
    assert scope["info"].module_name == "modal_app.functions"  # what the container imports
    files = mounted_package(functions.train_dit)
    names = {remote for remote in files if remote.endswith(".py")}
    assert {"/root/modal_app/__init__.py", "/root/modal_app/functions.py", "/root/modal_app/supervisor.py"} <= names


@pytest.mark.training
def test_in_the_container_the_functions_import_from_what_is_mounted(tmp_path):
    """/root holds only the mounted package; the project sits at the image's workdir."""
    root, workdir = tmp_path / "root", tmp_path / "app"
    for remote, local in mounted_package(functions.train_dit).items():
        if remote.endswith(".py"):
            path = root / remote.removeprefix("/root/")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(local, path)
    workdir.mkdir()
    for name in ("pyproject.toml", "requirements-modal.txt"):
        shutil.copy(REPO / name, workdir / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import importlib, json; m = importlib.import_module('modal_app.functions');"
        "print(json.dumps([str(m.project.root), sorted(m.TRAIN_FUNCTIONS), callable(m.train_dit.local)]))"
    )
    env = {**os.environ, "TANDEM_PROJECT_DIR": str(workdir), "PYTHONPATH": f"{root}{os.pathsep}{workdir / 'src'}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f'["{workdir}", ["classifier", "dit"], true]'
