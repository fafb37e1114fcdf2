import json
import shutil
import subprocess

import pytest

from support import LITERAL_ENV_VALUES, edit
from tandem.env.compose import render_compose, render_compose_cpu, render_env_file
from tandem.env.settings import load_project

SERVICE_BLOCK = """\
x-service: &service
  image: tandem:local
  build: *build
  init: true
  shm_size: 8gb
  stop_grace_period: 60s  # SIGTERM makes the trainers checkpoint before they exit
  # Runs as the owner of ./runs and ./data: the image's user (1000) unless TANDEM_UID/TANDEM_GID
  # (e.g. in .env) name yours; a uid without an account in the image gets HOME=/tmp for its caches.
  user: "${TANDEM_UID:-1000}:${TANDEM_GID:-1000}"
  environment:
    HOME: /tmp
  # The same host directories local runs use (TANDEM_DATA_DIR / TANDEM_RUNS_DIR, else ./data and ./runs).
  volumes:
    - "${TANDEM_DATA_DIR:-./data}:/data"
    - "${TANDEM_RUNS_DIR:-./runs}:/runs"

services:
"""
GPU_RESERVATION = """\
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: all
              capabilities: [gpu]
"""


def test_runs_and_data_are_host_directories_written_as_the_host_user(project):
    text = render_compose(project)
    assert SERVICE_BLOCK in text
    assert "\nvolumes:" not in text  # no named volume: what a run writes is in ./runs on the host


def test_every_service_reserves_the_gpu(project):
    text = render_compose(project)
    for name, command in [
        ("train-classifier", '["python", "-m", "tandem", "train", "classifier"]'),
        ("train-dit", '["python", "-m", "tandem", "train", "dit"]'),
        ("check", '["python", "-m", "tandem", "check"]\n    command: ["--label", "docker"]'),
    ]:
        assert f"  {name}:\n    <<: *service\n    entrypoint: {command}\n{GPU_RESERVATION}" in text
    assert text.count("driver: nvidia") == 3
    assert "target: runtime" in text and "dockerfile: docker/Dockerfile" in text


def test_mount_points_follow_settings(project_dir):
    edit(project_dir / "pyproject.toml", 'runs_dir = "/runs"', 'runs_dir = "/outputs"')
    assert '    - "${TANDEM_RUNS_DIR:-./runs}:/outputs"\n' in render_compose(load_project(project_dir))


def test_cpu_override_resets_every_gpu_reservation():
    assert render_compose_cpu().endswith(
        "services:\n  train-classifier:\n    deploy: !reset {}\n  train-dit:\n    deploy: !reset {}\n"
        "  check:\n    deploy: !reset {}\n"
    )


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_compose_config_accepts_both_files(project_dir):
    has_compose = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    if not has_compose:
        pytest.skip("docker compose plugin not installed")
    for files in (["-f", "compose.yaml"], ["-f", "compose.yaml", "-f", "compose.cpu.yaml"]):
        out = subprocess.run(["docker", "compose", *files, "config"], cwd=project_dir, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert "nvidia" not in out.stdout  # the CPU override removed the reservations


def test_the_two_node_file_starts_node_0_and_node_1_of_one_run():
    from support import REPO
    from tandem.env.compose import render_compose_multinode
    from tandem.env.settings import load_project

    text = render_compose_multinode(load_project(REPO))
    assert '    command: "--nodes 2 --node-rank 0 --master-addr node-0:29500 --device cpu ${TANDEM_FLAGS:-}"' in text
    assert '    command: "--nodes 2 --node-rank 1 --master-addr node-0:29500 --device cpu ${TANDEM_FLAGS:-}"' in text
    assert text.count('entrypoint: ["python", "-m", "tandem", "train", "dit"]') == 2
    assert "deploy:" not in text  # the CPU: gloo over the Docker network


def test_the_nodes_override_puts_the_trainers_on_the_host_network():
    from tandem.env.compose import render_compose_nodes

    text = render_compose_nodes()
    assert text.endswith(
        "services:\n  train-classifier:\n    network_mode: host\n  train-dit:\n    network_mode: host\n"
    )


def test_image_env_reads_back_in_tox_as_the_settings_wrote_it(project_dir, tmp_path):
    """docker/image.env is read by tox (set_env = file|...), which has no quoting: every value the settings
    allow reaches the test environment byte for byte."""
    import sys

    block = "\n".join(f"ODD{i} = {json.dumps(v)}" for i, v in enumerate(LITERAL_ENV_VALUES))
    edit(project_dir / "pyproject.toml", 'PYTHONUNBUFFERED = "1"', f'PYTHONUNBUFFERED = "1"\n{block}')
    tox_root = tmp_path / "tox"
    tox_root.mkdir()
    (tox_root / "image.env").write_text(render_env_file(load_project(project_dir)))
    (tox_root / "tox.ini").write_text(
        "[tox]\nno_package = true\n[testenv:x]\nskip_install = true\nset_env = file|{tox_root}/image.env\n"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "tox", "config", "-e", "x", "-k", "set_env", "-c", str(tox_root / "tox.ini")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.strip().split("=", 1) for line in shown.splitlines() if line.startswith("  ODD"))
    assert values == {f"ODD{i}": v for i, v in enumerate(LITERAL_ENV_VALUES)}
