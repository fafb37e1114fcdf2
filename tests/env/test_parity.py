import argparse
import dataclasses

import pytest

from support import edit
from tandem.env.commands import parity_command
from tandem.env.generate import write_generated
from tandem.env.modal_image import build_modal_image
from tandem.env.parity import compare, docker_facts, modal_facts
from tandem.env.settings import Project, load_project


def mismatches(project: Project, modal_image=None) -> list[str]:
    return [row.field for row in compare(docker_facts(project), modal_facts(project, modal_image)) if not row.match]


def test_fresh_project_is_in_parity(project):
    rows = compare(docker_facts(project), modal_facts(project))
    assert all(row.match for row in rows)
    fields = {row.field for row in rows}
    assert {"base image", "python", "uv version", "apt packages", "lock (sha256)", "source location"} <= fields
    assert "env TANDEM_ENV_DIGEST" in fields and "env PYTHONUNBUFFERED" in fields


def test_env_changed_only_in_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    assert mismatches(load_project(project_dir)) == ["env PYTHONUNBUFFERED"]


def test_different_uv_on_modal_side(project):
    other = dataclasses.replace(project, settings=dataclasses.replace(project.settings, uv_version="0.8.0"))
    assert "uv version" in mismatches(project, build_modal_image(other))


def test_package_added_by_hand_to_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "COPY src ./src", "RUN pip install requests==2.32.0\nCOPY src ./src")
    assert mismatches(load_project(project_dir)) == ["installs outside lock"]


def test_apt_package_added_by_hand_to_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "apt-get install -y gcc", "apt-get install -y curl gcc")
    assert mismatches(load_project(project_dir)) == ["apt packages"]


def test_different_base_image(project_dir):
    edit(
        project_dir / "docker/Dockerfile",
        "ARG PYTHON_IMAGE=python:3.11-slim-bookworm",
        "ARG PYTHON_IMAGE=python:3.12-slim-bookworm",
    )
    assert mismatches(load_project(project_dir)) == ["base image", "python"]


def test_stale_dockerfile_after_settings_edit(project_dir):
    edit(
        project_dir / "pyproject.toml",
        'PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True"',
        'PYTORCH_CUDA_ALLOC_CONF = "max_split_size_mb:128"',
    )
    assert mismatches(load_project(project_dir)) == ["env PYTORCH_CUDA_ALLOC_CONF", "env TANDEM_ENV_DIGEST"]


def test_different_lock_content(project_dir):
    edit(project_dir / "requirements-modal.txt", "# This file", "# Edited by hand\n# This file")
    # Both sides install the file on disk; what goes stale is the digest baked into the Dockerfile.
    assert mismatches(load_project(project_dir)) == ["env TANDEM_ENV_DIGEST"]


def test_source_before_dependencies_is_caught(project_dir):
    path = project_dir / "docker/Dockerfile"
    text = path.read_text().replace("COPY src ./src\n", "")
    path.write_text(
        text.replace(
            "COPY --from=builder /opt/venv /opt/venv", "COPY src /app/src\nCOPY --from=builder /opt/venv /opt/venv"
        )
    )
    assert mismatches(load_project(project_dir)) == ["source after deps"]


def test_settings_edit_then_render_changes_both_and_stays_in_parity(project_dir):
    before = load_project(project_dir)
    docker_before, modal_before = docker_facts(before), modal_facts(before)
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    after = load_project(project_dir)
    write_generated(after)
    docker_after, modal_after = docker_facts(after), modal_facts(after)
    assert docker_before.env["HF_XET_HIGH_PERFORMANCE"] == modal_before.env["HF_XET_HIGH_PERFORMANCE"] == "1"
    assert docker_after.env["HF_XET_HIGH_PERFORMANCE"] == modal_after.env["HF_XET_HIGH_PERFORMANCE"] == "0"
    assert mismatches(after) == []


def test_parity_command_prints_table_and_exit_code(project_dir, capsys):
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 0
    out = capsys.readouterr().out
    assert "field" in out and "match" in out and "parity ok" in out
    edit(project_dir / "docker/Dockerfile", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 1
    assert "env PYTHONUNBUFFERED" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["a b", 'quote " and \\ back', "dollar $HOME"])
def test_env_values_survive_quoting_on_both_sides(project_dir, value):
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    edit(project_dir / "pyproject.toml", 'PYTHONUNBUFFERED = "1"', f'PYTHONUNBUFFERED = "1"\nODD = "{escaped}"')
    project = load_project(project_dir)
    write_generated(project)
    assert docker_facts(project).env["ODD"] == value == modal_facts(project).env["ODD"]


def test_thread_variables_are_set_from_the_settings_in_both_images_and_locally(project_dir):
    from tandem.env.compose import render_env_file

    edit(project_dir / "pyproject.toml", "threads = 4", "threads = 3")
    project = load_project(project_dir)
    write_generated(project)
    docker, modal = docker_facts(project), modal_facts(project)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert docker.env[name] == modal.env[name] == "3"
        assert f"{name}=3" in render_env_file(project).splitlines()
    assert all(row.match for row in compare(docker, modal))
