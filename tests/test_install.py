"""tandem as a user gets it: the wheel installed (not editable) into a fresh venv from the locks, run from a
copy of the project without src/. Every command finds the project it is run in, never this checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, edit
from tandem.check.environment import source_digest

pytestmark = pytest.mark.training  # trains for real: outside `tox -e fast`

# What a user's copy of the project leaves out: the source (the wheel brings it) and what tools and runs make.
LEFT_OUT = {"src", ".git", ".venv", ".tox", "runs", "data", "outputs", "dist", "build"}
CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache")
SHORT_DIT = (
    "--steps", "20", "--batch-size", "32", "--sample-every", "0", "--samples-per-class", "2",
    "--sample-steps", "4", "--checkpoint-every", "0",
)  # fmt: skip


def uv(*args: str | Path, cwd: Path = REPO) -> None:
    done = subprocess.run([sys.executable, "-m", "uv", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """`uv build`, then a fresh venv holding the lock (wheels only, as the images install it) and the wheel."""
    work = tmp_path_factory.mktemp("install")
    uv("build", "--wheel", "--quiet", "-o", work / "dist", REPO)
    (wheel,) = (work / "dist").glob("tandem-*.whl")
    uv("venv", "--quiet", "--python", sys.executable, work / "venv")
    python = work / "venv" / "bin" / "python"
    uv(
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--require-hashes",
        "--no-build",
        "-r",
        REPO / "requirements-modal.txt",
    )
    uv("pip", "install", "--quiet", "--python", python, "--no-deps", wheel)
    return work / "venv"


def copy_project(dest: Path, source: bool = False) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        top = (LEFT_OUT - {"src"} if source else LEFT_OUT) if Path(directory) == REPO else set()
        return {name for name in names if name in top or name in CACHES}

    return shutil.copytree(REPO, dest, ignore=ignore)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("user").resolve() / "project")


@pytest.fixture(scope="module")
def user_env(venv) -> dict[str, str]:
    """The environment of a user's shell with the venv activated; uv (for `tandem lock`: host tooling,
    outside the runtime lock) comes from the environment running the tests."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TANDEM_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    path = [venv / "bin", Path(sys.executable).parent, env.get("PATH", "")]
    return env | {"PATH": os.pathsep.join(map(str, path)), "VIRTUAL_ENV": str(venv)}


@pytest.fixture(scope="module")
def tandem(user_env):
    """Runs the installed `tandem` in `cwd`."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["tandem", *args], cwd=cwd, env=user_env, capture_output=True, text=True)

    return run


def test_the_installed_wheel_is_what_runs(venv, user_env, project):
    where = subprocess.run(
        ["python", "-c", "import tandem; print(tandem.__file__)"],
        cwd=project, env=user_env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv / "lib") and not (project / "src").exists()


def test_render_and_lock_checks_pass_in_the_copy(tandem, project):
    done = tandem("render", "--check", cwd=project / "docker")
    assert done.returncode == 0 and "fresh" in done.stdout, done.stdout + done.stderr
    done = tandem("lock", "--check", cwd=project)
    assert (done.returncode, done.stdout) == (0, "locks are fresh\n"), done.stderr


def test_parity_passes_in_a_copy(tandem, tmp_path):
    # With src/: the images take the project's source from there (COPY src, the Modal mount), the tool not.
    project = copy_project(tmp_path.resolve() / "project", source=True)
    done = tandem("parity", cwd=project)
    assert done.returncode == 0 and "\nparity ok: " in done.stdout, done.stdout + done.stderr


def test_a_stale_dockerfile_in_the_copy_is_caught_and_the_checkout_untouched(tandem, tmp_path):
    stale = copy_project(tmp_path.resolve() / "stale")
    edit(stale / "docker" / "Dockerfile", "USER tandem", "USER root")
    ours = (REPO / "docker" / "Dockerfile").read_bytes()
    done = tandem("render", "--check", cwd=stale)
    assert done.returncode == 1
    assert done.stderr == f"stale in {stale}: docker/Dockerfile; run `tandem render` and commit the result\n"
    assert "-USER root\n+USER tandem\n" in done.stdout
    assert (REPO / "docker" / "Dockerfile").read_bytes() == ours


def test_outside_a_project_it_says_where_to_run(tandem, tmp_path):
    done = tandem("render", "--check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.endswith("cd into the project or pass --project DIR\n") and done.stderr.count("\n") == 1


def test_doctor_runs(tandem, project):
    done = tandem("doctor", "--json", cwd=project)
    assert done.returncode in (0, 1), done.stderr  # 1: this machine is not ready, which it may not be
    assert {"python", "lock"} <= {finding["name"] for finding in json.loads(done.stdout)}


def test_check_fingerprints_the_wheel_against_the_lock(tandem, project, tmp_path):
    done = tandem("check", "--no-gpu", "--out", str(tmp_path / "fp.json"), cwd=project)
    assert done.returncode == 0, done.stderr
    environment = json.loads((tmp_path / "fp.json").read_text())["environment"]
    locked = environment["distributions"]["locked"]
    assert [name for name, pin in locked.items() if not pin["matches_lock"]] == []
    assert environment["distributions"]["not_in_lock"] == {}
    assert environment["source_sha256"] == source_digest()  # the wheel carries exactly this source


def test_a_short_dit_training_writes_its_run_in_the_copy(tandem, project):
    done = tandem("train", "dit", "--dataset", "digits", "--run-name", "wheel", *SHORT_DIT, cwd=project)
    assert done.returncode == 0, done.stderr[-2000:]
    run = project / "runs" / "wheel"
    assert (run / "checkpoints" / "step_0000020.pt").is_file()
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 20 in steps
    assert not (REPO / "runs" / "wheel").exists()
