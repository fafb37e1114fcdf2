"""The app, read offline: the shared image, and each Function's GPU, Volumes, timeout and retries."""

from __future__ import annotations

import contextlib
import inspect

import pytest
from click.testing import CliRunner

from support import REPO
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.settings import load_project

FUNCTIONS = ("train_classifier", "train_dit", "sample", "check")


def raw(obj):
    """The client's inner object behind a public one (private to the pinned client, like modal_layers)."""
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)


def definition(function) -> dict:
    """What the client sends Modal for a Function, read from its loader: fails loudly when a new client
    stores it differently."""
    scope = inspect.getclosurevars(raw(function)._load).nonlocals
    missing = {"timeout", "retry_policy"} - set(scope)
    assert not missing, f"this modal client keeps {missing} elsewhere; update this helper"
    return scope


def options(function):
    return raw(function)._options


@pytest.fixture(scope="module")
def settings():
    return load_project(REPO).settings


def test_every_function_runs_on_the_shared_image(target):
    shared = modal_layers(build_modal_image(load_project(REPO)), load_project(REPO).settings.modal_builder_version)
    for name in FUNCTIONS:
        assert (
            modal_layers(getattr(target, name)._spec_.image, load_project(REPO).settings.modal_builder_version)
            == shared
        ), name


def test_functions_take_gpu_and_volumes_from_the_settings(target, settings):
    for name in FUNCTIONS:
        spec = getattr(target, name)._spec_
        assert spec.gpus == settings.modal_gpu, name
        assert set(spec.volumes) == {settings.data_dir, settings.runs_dir}, name
        assert spec.volumes[settings.data_dir] is raw(target.data_volume)
        assert spec.volumes[settings.runs_dir] is raw(target.runs_volume)
    assert target.DATA_VOLUME != target.RUNS_VOLUME


def test_functions_have_a_timeout_and_retries(target):
    expected = {"train_classifier": target.TRAIN_TIMEOUT, "train_dit": target.TRAIN_TIMEOUT}
    for name in FUNCTIONS:
        scope = definition(getattr(target, name))
        assert scope["timeout"] == expected.get(name, target.SHORT_TIMEOUT), name
        policy = scope["retry_policy"]
        assert policy.retries == target.RETRIES.max_retries >= 1, name
        assert policy.initial_delay_ms == 10_000


@pytest.mark.parametrize(("gpus", "expected_count"), [(1, 1), (4, 4)])
def test_gpu_type_count_and_timeout_flags_reach_the_call(target, gpus, expected_count):
    from modal_launch import with_resources

    variant = options(with_resources(target.train_dit, "A100-80GB", gpus, 1234))
    assert variant.resources.gpu_config.gpu_type == "A100-80GB"
    assert variant.resources.gpu_config.count == expected_count
    assert variant.timeout_secs == 1234


def test_modal_run_hands_every_flag_to_the_entrypoint(target, monkeypatch):
    """`modal run modal_app/train.py dit --steps 3 ...`: Modal's CLI passes the words through unparsed."""
    import modal.cli.run as modal_run
    import modal_launch

    received = {}
    monkeypatch.setattr(modal_run, "run_app", lambda *a, **k: contextlib.nullcontext())  # no Modal here
    monkeypatch.setattr(
        modal_launch, "launch", lambda t, argv, app_running: received.update(argv=argv, app=app_running)
    )
    command = modal_run._get_click_command_for_local_entrypoint(target.app, target.main)
    words = ["dit", "--steps", "3", "--gpu", "L4", "--gpus", "2", "--no-amp"]
    obj = {"detach": False, "show_progress": False, "show_timestamps": False, "env": None, "name": None}
    result = CliRunner().invoke(command, words, obj={**obj, "interactive": False, "result_path": None})
    assert result.exit_code == 0, result.output
    assert received == {"argv": words, "app": True}


def test_torchrun_command_reproduces_the_config(target):
    from tandem.train.config import DiTTrainConfig, add_config_arguments, config_from_args

    config = DiTTrainConfig(steps=7, run_name="r", runs_dir="/runs", lr=3e-4, amp=False)
    command = target.torchrun_command("dit", config, 4)
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", "-m"]
    assert command[7:10] == ["tandem", "train", "dit"]
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, DiTTrainConfig)
    assert config_from_args(DiTTrainConfig, parser.parse_args(command[10:])) == config


def test_in_the_container_the_project_is_found_at_the_image_workdir(tmp_path, monkeypatch):
    """Modal imports the file alone (as /root/train.py); the project sits where TANDEM_PROJECT_DIR says."""
    import importlib.util
    import shutil

    alone, workdir = tmp_path / "root", tmp_path / "app"
    alone.mkdir()
    shutil.copy(REPO / "modal_app" / "train.py", alone / "train.py")
    for name in ("pyproject.toml", "requirements-modal.txt"):
        (workdir / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, workdir / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("TANDEM_PROJECT_DIR", str(workdir))
    spec = importlib.util.spec_from_file_location("train_in_container", alone / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.project.root == workdir
    assert [
        layer.commands for layer in modal_layers(module.image, load_project(REPO).settings.modal_builder_version)
    ] == [
        layer.commands
        for layer in modal_layers(
            build_modal_image(load_project(REPO)), load_project(REPO).settings.modal_builder_version
        )
    ]
