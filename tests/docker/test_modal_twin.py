"""The Modal image, built locally from the very Dockerfile Modal's builder would run (docker/testing/
modal_twin.py), behaves like the Docker image and this machine: local, docker and modal-twin fingerprints
agree field for field. The closest proof there is, without Modal's servers, that the two images match."""

from __future__ import annotations

import difflib
import importlib.util

import pytest

from support import REPO
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.parity import modal_dockerfile
from tandem.env.settings import load_project

TWIN_IMAGE = "tandem-test/modal-twin:latest"


def load_twin_module():
    spec = importlib.util.spec_from_file_location("modal_twin", REPO / "docker" / "testing" / "modal_twin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def twin_context(standin_build_args, tmp_path_factory):
    twin = load_twin_module()
    dest = tmp_path_factory.mktemp("modal-twin")
    return twin.write_context(
        dest, standin_build_args["PYTHON_IMAGE"], standin_build_args["UV_IMAGE"], load_project(REPO)
    )


@pytest.fixture(scope="module")
def twin_image(buildkit_build, twin_context, remove_images):
    remove_images(TWIN_IMAGE)
    buildkit_build("-t", TWIN_IMAGE, context=twin_context)
    return TWIN_IMAGE


def test_twin_changes_only_the_images_and_the_install_transport(twin_context):
    modal = modal_dockerfile(
        modal_layers(build_modal_image(load_project(REPO)), load_project(REPO).settings.modal_builder_version)
    ).text.splitlines()
    twin = (twin_context / "Dockerfile").read_text().splitlines()
    changed = [line for line in difflib.ndiff(modal, twin) if line[:1] in "-+"]
    assert len(changed) == 6, "\n".join(changed)  # three lines out, three in
    removed = [line[2:] for line in changed if line[0] == "-"]
    assert removed[0].startswith("FROM python:")
    assert removed[1].startswith("COPY --from=ghcr.io/astral-sh/uv:")
    assert removed[2].startswith("RUN /.uv/uv pip install")
    added = [line[2:] for line in changed if line[0] == "+"]
    assert added[2].endswith(removed[2][len("RUN ") :])  # the install command itself is untouched


def test_twin_context_holds_what_the_dockerfile_names(twin_context):
    assert (twin_context / ".0_requirements-modal.txt").read_bytes() == (REPO / "requirements-modal.txt").read_bytes()
    assert (twin_context / "mounts/app/src/tandem/__init__.py").is_file()
    assert not list((twin_context / "mounts").rglob("__pycache__"))  # Modal's mount ignores them


def test_local_docker_and_modal_twin_fingerprints_match(
    twin_image, run_for_file, compare, local_fingerprint, docker_fingerprint, fingerprint_dir
):
    # As root, like Modal's containers; the default runs dir (/runs) does not exist there, so write to /tmp.
    command = ["python", "-m", "tandem", "check", "--label", "modal-twin", "--out", "/tmp/modal-twin.json"]
    twin = run_for_file(twin_image, command, "/tmp/modal-twin.json", fingerprint_dir)
    code, report = compare(local_fingerprint, docker_fingerprint, twin)
    assert code == 0, report
