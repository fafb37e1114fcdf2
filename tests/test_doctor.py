import argparse

import pytest
import torch

from support import REPO, copy_project, edit
from tandem import doctor
from tandem.env.settings import load_project


@pytest.fixture
def ctx():
    return doctor.Context(load_project(REPO), "H100")


def test_old_driver_fails_with_the_minimum_and_a_fix(ctx, monkeypatch):
    monkeypatch.setattr(doctor, "nvidia_driver_version", lambda: "550.54.15")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    finding = doctor.nvidia_driver(ctx)
    assert finding.status == "fail" and "older than 580" in finding.detail and "upgrade the driver" in finding.fix


def test_new_driver_passes(ctx, monkeypatch):
    monkeypatch.setattr(doctor, "nvidia_driver_version", lambda: "580.65.06")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert doctor.nvidia_driver(ctx).status == "ok"


@pytest.mark.parametrize(("gpu", "status"), [("H100", "ok"), ("L4", "ok"), ("T4", "ok")])
def test_modal_gpu_kernels_against_the_build(ctx, monkeypatch, gpu, status):
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90"])
    ctx.modal_gpu = gpu
    assert doctor.modal_gpu_kernels(ctx).status == status


def test_modal_gpu_without_kernels_fails(ctx, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_80", "sm_90"])
    ctx.modal_gpu = "T4"
    finding = doctor.modal_gpu_kernels(ctx)
    assert finding.status == "fail" and "sm_75" in finding.detail


def test_missing_modal_credentials_say_how_to_log_in(ctx, monkeypatch, tmp_path):
    import modal.config

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setattr(modal.config.config, "get", lambda key, use_env=True: None)  # no token in ~/.modal.toml
    finding = doctor.modal_credentials(ctx)
    assert finding.status == "fail" and "modal setup" in finding.fix
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    assert doctor.modal_credentials(ctx).detail == "credentials: MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are set"


def test_stale_lock_and_generated_files_fail(tmp_path):
    project_dir = copy_project(tmp_path)
    edit(project_dir / "pyproject.toml", '"torch==2.14.1"', '"torch==2.15.0"')
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    ctx = doctor.Context(load_project(project_dir), "H100")
    lock = doctor.lock_fresh(ctx)
    assert lock.status == "fail" and "torch==2.15.0" in lock.detail and "tandem lock" in lock.fix
    generated = doctor.generated_fresh(ctx)
    assert generated.status == "fail" and "docker/Dockerfile" in generated.detail


def test_python_mismatch_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.platform, "python_version_tuple", lambda: ("3", "12", "1"))
    assert doctor.python_version(doctor.Context(load_project(REPO), "H100")).status == "fail"


def test_no_docker_fails_docker_target(ctx, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.docker_engine(ctx).status == "fail"
    assert doctor.compose_v2(ctx).status == "fail"


def test_gpu_without_container_runtime_fails(ctx, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(doctor, "_run", lambda cmd: '{"runc":{}}')
    monkeypatch.setattr(doctor, "nvidia_driver_version", lambda: "580.1")
    finding = doctor.nvidia_runtime(ctx)
    assert finding.status == "fail" and "nvidia-ctk" in finding.fix


def test_exit_code_follows_failures(monkeypatch, capsys):
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", "/nonexistent")
    args = argparse.Namespace(target="modal", modal_gpu="", project=str(REPO), json=False)
    assert doctor.doctor_command(args) == 1
    assert "not ready" in capsys.readouterr().out
    args.target = "local"
    monkeypatch.setattr(doctor, "nvidia_driver_version", lambda: None)
    assert doctor.doctor_command(args) == 0


def test_unknown_modal_gpu_is_a_usage_error():
    from tandem.errors import UsageError

    with pytest.raises(UsageError, match="not a Modal GPU type"):
        doctor.doctor_command(argparse.Namespace(target="modal", modal_gpu="X9000", project=str(REPO), json=False))
