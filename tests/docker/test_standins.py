"""The local stand-ins for the Dockerfile's base images match the settings and behave like the originals."""

from __future__ import annotations

import io
import tarfile

import pytest

from support import REPO
from tandem.env.settings import load_project


@pytest.fixture(scope="module")
def settings():
    return load_project(REPO).settings


def test_standins_exist(docker_client, standin_build_args):
    for ref in standin_build_args.values():
        assert docker_client.images.get(ref)


def test_python_standin_has_the_settings_python(docker_client, standin_build_args, settings):
    out = docker_client.containers.run(
        standin_build_args["PYTHON_IMAGE"],
        ["python", "-c", "import sys; print(tuple(sys.version_info[:2]))"],
        remove=True,
    )
    assert out.decode().strip() == str(tuple(int(p) for p in settings.python.split(".")))


def test_python_standin_has_what_the_dockerfile_uses(docker_client, standin_build_args):
    script = "for c in python python3 useradd apt-get; do command -v $c; done; ls /etc/ssl/certs/ca-certificates.crt"
    out = docker_client.containers.run(standin_build_args["PYTHON_IMAGE"], ["sh", "-ec", script], remove=True)
    assert len(out.decode().split()) == 5


def test_uv_standin_holds_uv_at_the_settings_version(docker_client, standin_build_args, settings):
    image = standin_build_args["UV_IMAGE"]
    assert docker_client.containers.run(image, ["--version"], remove=True).decode().split()[:2] == [
        "uv",
        settings.uv_version,
    ]
    container = docker_client.containers.create(image)
    try:
        for path in ("/uv", "/uvx"):
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
                member = tf.getmembers()[0]
                assert member.isfile() and member.mode & 0o111, path
    finally:
        container.remove()


def test_standins_build_with_apt_and_https(buildkit_build, docker_client, standin_build_args, tmp_path):
    """What the Dockerfile does in a build: apt packages from the Debian mirror, and uv reaching the
    package index over HTTPS with the `ca_bundle` secret when one is given."""
    (tmp_path / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE\nARG UV_IMAGE\n"
        "FROM ${UV_IMAGE} AS uv\n"
        "FROM ${PYTHON_IMAGE}\n"
        "COPY --from=uv /uv /usr/local/bin/uv\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && gcc --version\n"
        "RUN --mount=type=secret,id=ca_bundle \\\n"
        "    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi && \\\n"
        "    uv venv /opt/venv --python python && uv pip install --python /opt/venv/bin/python six\n"
        'RUN /opt/venv/bin/python -c "import six"\n'
    )
    args = [f"--build-arg={k}={v}" for k, v in standin_build_args.items()]
    tag = "tandem-test/standin-smoke:latest"
    buildkit_build("-t", tag, *args, context=tmp_path)
    docker_client.images.remove(tag)
