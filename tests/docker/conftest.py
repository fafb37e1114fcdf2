"""Fixtures for tests that need a Docker engine: they run only with TANDEM_DOCKER_TESTS=1 (the docker tox
env sets it), and there a missing engine is an error, not a skip."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path, PurePosixPath

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TESTING = REPO / "docker" / "testing"
CA_BUNDLE = Path(os.environ.get("TANDEM_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
# One compose project for every test, so its containers and images are the tests' own.
COMPOSE_PROJECT = "tandem-test"
COMPOSE_FILES = ("compose.yaml", "compose.cpu.yaml")  # no GPU runtime on test machines
# The containers run as a host user who is not the image's (uid 1000): as root, a made-up one.
HOST_UID = 4321 if os.geteuid() == 0 else os.getuid()
# What `docker build` needs of the project; the rest of the repo stays out of context copies.
CONTEXT_FILES = ("pyproject.toml", "requirements-modal.txt", ".dockerignore", "docker/Dockerfile")


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
def local_registry(docker_engine, tmp_path_factory):
    """A registry (Debian's docker-registry, the v2 API) on 127.0.0.1 at a free port, storing in a temporary
    directory; yields its host:port. The engine pushes to and pulls from loopback registries over HTTP."""
    binary = _script("ensure-registry.sh").strip()
    root = tmp_path_factory.mktemp("registry")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{probe.getsockname()[1]}"
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: {host}\n"
    )
    log = root / "registry.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 15
    while True:
        try:
            no_proxy.open(f"http://{host}/v2/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"docker-registry did not answer on {host}:\n{log.read_text()[-2000:]}", pytrace=False)
            time.sleep(0.1)
    yield host
    proc.terminate()
    proc.wait(timeout=10)


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


@pytest.fixture(scope="session")
def compose_dirs(tmp_path_factory) -> dict[str, Path]:
    """The host's runs and data directories for the compose services, owned by HOST_UID (mode 755)."""
    root = tmp_path_factory.mktemp("compose")
    dirs = {"runs": root / "runs", "data": root / "data"}
    for path in dirs.values():
        path.mkdir()
        if os.geteuid() == 0:
            os.chown(path, HOST_UID, HOST_UID)
    return dirs


@pytest.fixture(scope="session")
def compose_runs(compose_dirs) -> Path:
    """Where `docker compose run` leaves what it writes to /runs: a directory on this machine."""
    return compose_dirs["runs"]


@pytest.fixture(scope="session")
def compose_env(standin_build_args, compose_dirs) -> dict[str, str]:
    """The environment compose.yaml reads: the stand-in base images, the host's runs and data directories
    and their owner, and, when there is one, the CA bundle."""
    env = dict(os.environ) | {f"TANDEM_{key}": value for key, value in standin_build_args.items()}
    env |= {"TANDEM_RUNS_DIR": str(compose_dirs["runs"]), "TANDEM_DATA_DIR": str(compose_dirs["data"])}
    env |= {"TANDEM_UID": str(HOST_UID), "TANDEM_GID": str(HOST_UID)}
    if CA_BUNDLE.is_file():
        env["TANDEM_CA_BUNDLE"] = str(CA_BUNDLE)
    return env


@pytest.fixture(scope="session")
def compose(compose_env):
    """Runs `docker compose -p tandem-test -f compose.yaml -f compose.cpu.yaml [-f EXTRA...] ARGS` in the repo
    (`base`: other files instead of those two; `env`: variables added to compose_env)."""

    def run(
        *args: str, files: tuple[Path, ...] = (), check: bool = True, base=COMPOSE_FILES, env=None
    ) -> subprocess.CompletedProcess:
        cmd = ["docker", "compose", "-p", COMPOSE_PROJECT]
        for name in (*base, *map(str, files)):
            cmd += ["-f", name]
        env = compose_env | (env or {})
        proc = subprocess.run([*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            pytest.fail(f"docker compose {' '.join(args)} failed ({proc.returncode}):\n{tail}", pytrace=False)
        return proc

    return run


@pytest.fixture(scope="session")
def compose_image(compose, docker_client) -> str:
    """`docker compose build`, once per session; the image every service runs."""
    compose("down", "--volumes", "--remove-orphans")
    compose("build")
    yield "tandem:local"
    compose("down", "--volumes", "--remove-orphans")
    # Each service builds the shared image and labels it as its own; the tag keeps one, the rest dangle.
    labels = [f"com.docker.compose.project={COMPOSE_PROJECT}"]
    for image in docker_client.images.list(filters={"dangling": True, "label": labels}):
        with contextlib.suppress(Exception):
            docker_client.images.remove(image.id)


def copy_out(client, image: str, path: str, dest: Path) -> Path:
    """A file or folder from a throwaway container of `image`, into dest."""
    container = client.containers.create(image)
    try:
        return copy_from_container(container, path, dest)
    finally:
        container.remove()


def copy_from_container(container, path: str, dest: Path) -> Path:
    stream, _ = container.get_archive(path)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tf:
        tf.extractall(dest, filter="data")
    return dest / PurePosixPath(path).name


@pytest.fixture(scope="session")
def image_file(docker_client):
    """Copies a path out of an image (a container is created, never started): (image, path, dest) -> local path."""

    def fetch(image: str, path: str, dest: Path) -> Path:
        return copy_out(docker_client, image, path, dest)

    return fetch


@pytest.fixture(scope="session")
def ca_bundle() -> Path:
    if not CA_BUNDLE.is_file():
        pytest.skip(f"no CA bundle at {CA_BUNDLE}: no secret was handed to the builds")
    return CA_BUNDLE


@pytest.fixture(scope="session")
def run_for_file(docker_client):
    """Runs `command` in a container of `image` and copies `path` out of it: the container is removed after."""

    def run(image: str, command: list[str], path: str, dest: Path, **kwargs) -> Path:
        container = docker_client.containers.create(image, command, **kwargs)
        try:
            container.start()
            status = container.wait()["StatusCode"]
            if status != 0:
                logs = container.logs().decode(errors="replace").splitlines()[-30:]
                pytest.fail(f"{image} {' '.join(command)} exited {status}:\n" + "\n".join(logs), pytrace=False)
            return copy_from_container(container, path, dest)
        finally:
            container.remove(force=True)

    return run


@pytest.fixture(scope="session")
def fingerprint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fingerprints")


def image_env_file() -> dict[str, str]:
    lines = (REPO / "docker" / "image.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="session")
def local_fingerprint(fingerprint_dir) -> Path:
    """This process's environment's fingerprint, as local runs see it: with the variables tox sets from
    docker/image.env, and without tox's random PYTHONHASHSEED, which belongs to the test runner (it picks
    a new one per invocation) and not to the environment under test."""
    from tandem.cli import main as tandem

    out = fingerprint_dir / "local.json"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in image_env_file().items():
            mp.setenv(key, value)
        mp.delenv("PYTHONHASHSEED", raising=False)
        assert tandem(["check", "--label", "local", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def docker_fingerprint(compose, compose_image, compose_runs) -> Path:
    """`docker compose run --rm check`: the service's own command writes /runs/fingerprints/docker.json."""
    compose("run", "--rm", "check")
    return compose_runs / "fingerprints" / "docker.json"


@pytest.fixture(scope="session")
def compare():
    """`tandem check --compare PATHS...` -> (exit code, what it printed)."""
    from tandem.cli import main as tandem

    def run(*paths: Path) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = tandem(["check", "--compare", *map(str, paths)])
        return code, out.getvalue()

    return run


@pytest.fixture(scope="session")
def differing_fields():
    """The fields `tandem check --compare` finds different between fingerprint files."""
    import json

    from tandem.check.compare import compare_fingerprints

    def fields(*paths: Path) -> list[str]:
        rows = compare_fingerprints([json.loads(p.read_text()) for p in paths])
        return [row.field for row in rows if not row.ok]

    return fields


@pytest.fixture
def context_copy(tmp_path) -> Path:
    """A copy of what `docker build` reads from the project (src/ without caches), to plant things in."""
    dest = tmp_path / "context"
    for name in CONTEXT_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="session")
def remove_images(docker_client):
    """Tags registered here are removed at the end of the session: throwaway images don't pile up."""
    tags: list[str] = []
    yield tags.append
    for tag in tags:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, noprune=False)
