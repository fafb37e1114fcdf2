"""Fixtures for tests that need a Docker engine: they run only with TANDEM_DOCKER_TESTS=1 (the docker tox
env sets it), and there a missing engine is an error, not a skip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TESTING = REPO / "docker" / "testing"
CA_BUNDLE = Path(os.environ.get("TANDEM_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.docker)


def _script(name: str, *args: str) -> str:
    proc = subprocess.run([str(TESTING / name), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{name} failed ({proc.returncode}):\n{proc.stderr.strip()}", pytrace=False)
    return proc.stdout


@pytest.fixture(scope="session", autouse=True)
def docker_enabled():
    if os.environ.get("TANDEM_DOCKER_TESTS") != "1":
        pytest.skip("needs a Docker engine: run with TANDEM_DOCKER_TESTS=1 (tox -e docker)")


@pytest.fixture(scope="session")
def docker_engine(docker_enabled):
    """Starts (or installs and starts) the engine and the Compose plugin."""
    _script("ensure-engine.sh")


@pytest.fixture(scope="session")
def standin_build_args(docker_engine) -> dict[str, str]:
    """{"PYTHON_IMAGE": ..., "UV_IMAGE": ...}: local stand-ins for the Dockerfile's base images."""
    lines = _script("build-standins.sh").split()
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="session")
def docker_client(docker_engine):
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def buildkit_build(docker_engine):
    """Runs a BuildKit `docker build` (the SDK has no BuildKit, so no secrets) with the CA bundle as the
    `ca_bundle` secret; returns the completed process, output captured."""

    def build(*args: str, context: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(TESTING / "docker-buildkit.sh"), "build", "--progress=plain"]
        if CA_BUNDLE.is_file():
            cmd += ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"]
        proc = subprocess.run([*cmd, *args, str(context)], capture_output=True, text=True)
        if check and proc.returncode != 0:
            tail = "\n".join(proc.stderr.splitlines()[-40:])
            pytest.fail(f"docker build {' '.join(args)} failed:\n{tail}", pytrace=False)
        return proc

    return build
