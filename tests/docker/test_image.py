"""The committed docker/Dockerfile builds with the stand-in base images, and its runtime image holds what
the settings and the lock say: the Python, exactly the locked distributions, the apt packages, the env."""

from __future__ import annotations

import json

import pytest
from packaging.markers import Marker

from support import REPO
from tandem.env.lockfile import read_lock
from tandem.env.settings import load_project

DOCKERFILE = REPO / "docker" / "Dockerfile"
TAG = "tandem-test/runtime:latest"

# Prints the marker environment and every installed distribution of the image's Python.
PROBE = """
import importlib.metadata as md, json, os, platform, sys
env = {
    "python_version": "%d.%d" % sys.version_info[:2],
    "python_full_version": platform.python_version(),
    "implementation_name": sys.implementation.name,
    "platform_python_implementation": platform.python_implementation(),
    "sys_platform": sys.platform,
    "platform_machine": platform.machine(),
    "platform_system": platform.system(),
    "os_name": os.name,
}
dists = {d.metadata["Name"]: d.version for d in md.distributions()}
print(json.dumps({"env": env, "dists": dists, "environ": dict(os.environ), "cwd": os.getcwd()}))
"""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def project():
    return load_project(REPO)


@pytest.fixture(scope="module")
def runtime_image(buildkit_build, standin_build_args, remove_images):
    if not DOCKERFILE.is_file():
        pytest.skip("docker/Dockerfile not rendered yet")
    remove_images(TAG)  # a rebuild after a source edit would leave the previous one untagged
    args = [f"--build-arg={k}={v}" for k, v in standin_build_args.items()]
    buildkit_build("--target", "runtime", "-t", TAG, "-f", str(DOCKERFILE), *args)
    return TAG


@pytest.fixture(scope="module")
def probe(docker_client, runtime_image):
    out = docker_client.containers.run(runtime_image, ["python", "-c", PROBE], remove=True)
    return json.loads(out)


def test_image_python_is_the_settings_python(probe, project):
    assert probe["env"]["python_version"] == project.settings.python


def test_image_holds_exactly_the_locked_distributions(probe, project):
    env = probe["env"]
    wanted = {
        pin.name: pin.version
        for pin in read_lock(project.lock_path)
        if not pin.marker or Marker(pin.marker).evaluate(env)
    }
    installed = {_canonical(name): version for name, version in probe["dists"].items()}
    assert installed == {_canonical(name): version for name, version in wanted.items()}


def test_image_env_and_workdir_follow_the_settings(probe, project):
    for key, value in project.settings.env.items():
        assert probe["environ"].get(key) == value, key
    assert probe["cwd"] == project.settings.workdir


def test_image_has_the_settings_apt_packages(docker_client, runtime_image, project):
    packages = list(project.settings.apt_packages)
    if not packages:
        pytest.skip("the settings name no apt packages")
    cmd = ["dpkg-query", "-W", "-f", "${Package} ${Status}\\n", *packages]
    out = docker_client.containers.run(runtime_image, cmd, remove=True).decode()
    assert sorted(out.split("\n")[:-1]) == sorted(f"{p} install ok installed" for p in packages)


def test_image_c_compiler_builds_and_runs(docker_client, runtime_image, project):
    """Triton compiles its launcher with the system C compiler at run time."""
    if "gcc" not in project.settings.apt_packages:
        pytest.skip("the settings install no C compiler")
    script = "printf 'int main(void){return 0;}' | gcc -x c - -o /tmp/probe && /tmp/probe && echo ok"
    out = docker_client.containers.run(runtime_image, ["sh", "-ec", script], remove=True)
    assert out.decode().strip() == "ok"
