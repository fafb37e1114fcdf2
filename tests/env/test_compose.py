import shutil
import subprocess

import pytest

from support import edit
from tandem.env.compose import GPU_SERVICES, SERVICES, render_compose, render_compose_cpu
from tandem.env.settings import load_project


def test_services_volumes_and_gpu(project):
    text = render_compose(project)
    for name in SERVICES:
        assert f"  {name}:\n" in text
    assert "    - data:/data\n" in text and "    - runs:/runs\n" in text
    assert text.count("driver: nvidia") == len(GPU_SERVICES)
    assert "target: runtime" in text and "dockerfile: docker/Dockerfile" in text


def test_mount_points_follow_settings(project_dir):
    edit(project_dir / "pyproject.toml", 'runs_dir = "/runs"', 'runs_dir = "/outputs"')
    assert "    - runs:/outputs\n" in render_compose(load_project(project_dir))


def test_cpu_override_resets_every_gpu_reservation():
    text = render_compose_cpu()
    assert text.count("deploy: !reset {}") == len(GPU_SERVICES)


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_compose_config_accepts_both_files(project_dir):
    has_compose = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    if not has_compose:
        pytest.skip("docker compose plugin not installed")
    for files in (["-f", "compose.yaml"], ["-f", "compose.yaml", "-f", "compose.cpu.yaml"]):
        out = subprocess.run(["docker", "compose", *files, "config"], cwd=project_dir, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert "nvidia" not in out.stdout  # the CPU override removed the reservations
