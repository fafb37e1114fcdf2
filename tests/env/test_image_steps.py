"""What each renderer emits for each kind of image step: docker/Dockerfile's lines and the Modal image's
layers (as Modal's builder would run them), side by side, for this project's steps."""

import typing

import pytest

from support import REPO
from tandem.env.dockerfile import render
from tandem.env.image_steps import AptInstall, Base, Env, Install, Source, Step, Workdir, image_steps
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.settings import load_project

PROJECT = load_project(REPO)


@pytest.fixture(scope="module")
def both():
    layers = modal_layers(build_modal_image(PROJECT), PROJECT.settings.modal_builder_version)
    return render(PROJECT).splitlines(), layers


def test_the_steps_in_build_order():
    assert [type(step) for step in image_steps(PROJECT)] == [Base, AptInstall, Install, Env, Workdir, Source]
    assert set(typing.get_args(Step)) == {Base, AptInstall, Install, Env, Workdir, Source}  # each one below


def test_base(both):
    dockerfile, layers = both
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "FROM ${PYTHON_IMAGE} AS runtime" in dockerfile
    assert layers[0].commands == ["FROM python:3.11-slim-bookworm"]


def test_apt_install(both):
    dockerfile, layers = both
    assert "RUN apt-get update && apt-get install -y gcc libc6-dev && rm -rf /var/lib/apt/lists/*" in dockerfile
    assert layers[1].commands == ["FROM base", "RUN apt-get update", "RUN apt-get install -y gcc libc6-dev"]


def test_install(both):
    dockerfile, layers = both
    options = "--compile-bytecode --require-hashes --no-build --link-mode copy"
    assert "ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9" in dockerfile
    assert (
        f"    uv pip install --python /opt/venv/bin/python {options} --requirements /tmp/requirements-modal.txt"
        in dockerfile
    )
    assert layers[2].commands[1] == "COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /.uv/uv"
    assert layers[2].commands[-1] == (
        f"RUN /.uv/uv pip install --python $(command -v python) {options} --requirements /.uv/0/requirements-modal.txt"
    )


def test_env(both):
    dockerfile, layers = both
    assert "ENV PYTHONUNBUFFERED=1 \\" in dockerfile and "    OMP_NUM_THREADS=4 \\" in dockerfile
    assert layers[3].commands[:3] == ["FROM base", "ENV PYTHONUNBUFFERED=1", "ENV HF_XET_HIGH_PERFORMANCE=1"]
    assert "ENV OMP_NUM_THREADS=4" in layers[3].commands


def test_workdir(both):
    dockerfile, layers = both
    assert "WORKDIR /app" in dockerfile
    assert layers[4].commands == ["FROM base", "WORKDIR /app"]


def test_source(both):
    dockerfile, layers = both
    assert dockerfile[-3:] == [
        "COPY pyproject.toml requirements-modal.txt ./",
        "COPY src ./src",
        'CMD ["python", "-m", "tandem", "train", "dit"]',
    ]
    mounted = [target for layer in layers[5:] for _, target in layer.mounted_files]
    assert mounted[:2] == ["/app/pyproject.toml", "/app/requirements-modal.txt"]
    assert all(target.startswith("/app/src/") for target in mounted[2:]) and len(mounted) > 2
