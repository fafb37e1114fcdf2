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


DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
def pinned(tmp_path):
    project_dir = copy_project(tmp_path)
    edit(project_dir / "pyproject.toml", 'base_image_digest = ""', f'base_image_digest = "{DIGEST}"')
    return doctor.Context(load_project(project_dir), "H100")


def test_an_unpinned_base_is_a_warning_offline(ctx, monkeypatch):
    import tandem.env.base_image as base_image

    monkeypatch.setattr(base_image, "resolve", None)  # never asked: the settings alone decide
    finding = doctor.base_image_pinned(ctx)
    assert (finding.status, finding.detail, finding.fix) == (
        "warn",
        "python:3.11-slim-bookworm is not pinned by digest: each build takes whatever the tag names then",
        "run `tandem pin-base`, then `tandem render`",
    )


def test_a_tag_that_moved_off_the_pin_is_a_warning_naming_both(pinned, monkeypatch):
    import tandem.env.base_image as base_image

    asked = []

    def resolve(ref, source, recorded, timeout):
        asked.append((ref, source, recorded, timeout))
        return base_image.Resolved(OTHER, "the registry docker.io")

    monkeypatch.setattr(base_image, "resolve", resolve)
    finding = doctor.base_image_pinned(pinned)
    assert asked == [("python:3.11-slim-bookworm", "registry", DIGEST, 5)]
    assert (finding.status, finding.detail) == (
        "warn",
        f"python:3.11-slim-bookworm now resolves to {OTHER} in the registry docker.io, but the settings pin {DIGEST}",
    )
    assert finding.fix == "builds keep the pinned one; to take the new one run `tandem pin-base`, then `tandem render`"


def test_the_engine_is_asked_when_the_registry_is_out_of_reach(pinned, monkeypatch):
    import tandem.env.base_image as base_image

    def resolve(ref, source, recorded, timeout):
        if source == "registry":
            raise base_image.Unresolved("long message", "the registry registry-1.docker.io is unreachable")
        return base_image.Resolved(DIGEST, "the local engine")

    monkeypatch.setattr(base_image, "resolve", resolve)
    finding = doctor.base_image_pinned(pinned)
    assert (finding.status, finding.detail) == (
        "ok",
        f"python:3.11-slim-bookworm@{DIGEST}: the tag still resolves to it in the local engine",
    )


def test_a_pin_that_cannot_be_checked_is_ok_with_the_reasons(pinned, monkeypatch):
    import tandem.env.base_image as base_image

    def resolve(ref, source, recorded, timeout):
        raise base_image.Unresolved("long message", f"no {source}")

    monkeypatch.setattr(base_image, "resolve", resolve)
    finding = doctor.base_image_pinned(pinned)
    assert (finding.status, finding.detail) == (
        "ok",
        f"python:3.11-slim-bookworm@{DIGEST} (the tag could not be checked now: no registry; no engine)",
    )


@pytest.mark.parametrize(
    "gpu, status, words",
    [
        (
            "H100",
            "ok",
            "H100 forms clusters: modal run modal_app/train.py dit --gpu H100 --gpus 8 --nodes 2 (2 to 32 nodes",
        ),
        ("B200+", "ok", "B200+ forms clusters"),
        ("A100-80GB", "skip", "A100-80GB runs one container per call; --nodes needs H100, H100!, H200, B200, B200+"),
    ],
)
def test_doctor_says_whether_the_modal_gpu_forms_clusters(ctx, gpu, status, words):
    ctx.modal_gpu = gpu
    finding = doctor.modal_clusters(ctx)
    assert finding.status == status and finding.detail.startswith(words)


def test_every_modal_gpu_type_has_an_architecture():
    from tandem.env.modal_gpus import GPU_ARCH, GPU_TYPES

    assert list(GPU_ARCH) == list(GPU_TYPES)
