"""Differences planted in the Docker target only are caught by `tandem check --compare`, by name, and they
are the only fields that differ: an env var set in compose, a package installed in the container."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

PLANTED_PACKAGE = "planted-probe"
PLANTED_IMAGE = "tandem-test/planted-package:latest"


def test_env_var_set_only_in_compose_is_named(
    compose, compose_image, compose_runs, compare, differing_fields, local_fingerprint
):
    out = "fingerprints/planted-env.json"
    compose("run", "--rm", "-e", "OMP_NUM_THREADS=1", "check", "--label", "planted-env", "--out", f"/runs/{out}")
    planted = compose_runs / out
    code, report = compare(local_fingerprint, planted)
    assert code == 1
    assert "env OMP_NUM_THREADS" in report
    assert differing_fields(local_fingerprint, planted) == ["env OMP_NUM_THREADS"]


def build_wheel(dest: Path, name: str = PLANTED_PACKAGE, version: str = "0.1.0") -> Path:
    """A minimal pure-Python wheel, written by hand: no build backend, no network."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tandem-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture
def planted_package_image(buildkit_build, standin_build_args, compose_image, remove_images, tmp_path):
    """tandem:local plus one wheel installed into its venv, offline, with the uv stand-in (not left behind)."""
    wheel = build_wheel(tmp_path)
    (tmp_path / "Dockerfile").write_text(
        "ARG UV_IMAGE\nARG BASE\n"
        "FROM ${UV_IMAGE} AS uv\n"
        "FROM ${BASE}\n"
        "USER root\n"
        f"COPY {wheel.name} /tmp/\n"
        "RUN --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \\\n"
        f"    uv pip install --offline --no-deps --python /opt/venv/bin/python /tmp/{wheel.name}\n"
        "USER tandem\n"
    )
    remove_images(PLANTED_IMAGE)
    args = [f"--build-arg=UV_IMAGE={standin_build_args['UV_IMAGE']}", f"--build-arg=BASE={compose_image}"]
    buildkit_build("-t", PLANTED_IMAGE, *args, context=tmp_path)
    # The compose `check` service, as is, but on the planted image.
    override = tmp_path / "compose.planted.yaml"
    override.write_text(f"services:\n  check:\n    image: {PLANTED_IMAGE}\n")
    return override


def test_package_installed_only_in_the_container_is_named(
    compose, compose_image, compose_runs, compare, differing_fields, local_fingerprint, planted_package_image
):
    out = "fingerprints/planted-package.json"
    compose(
        "run", "--rm", "check", "--label", "planted-package", "--out", f"/runs/{out}", files=(planted_package_image,)
    )
    planted = compose_runs / out
    code, report = compare(local_fingerprint, planted)
    assert code == 1
    assert f"package {PLANTED_PACKAGE}" in report
    assert differing_fields(local_fingerprint, planted) == [f"package {PLANTED_PACKAGE}"]
