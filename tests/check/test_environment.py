import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from support import REPO
from tandem.check.environment import collect_environment, distributions, source_digest, top_level_modules
from tandem.env.settings import load_project


def test_this_environment_matches_the_lock():
    report = distributions(load_project(REPO))
    torch = report["locked"]["torch"]
    assert torch["locked"] == "2.14.1" and torch["matches_lock"]
    mismatched = {name: entry for name, entry in report["locked"].items() if not entry["matches_lock"]}
    assert mismatched == {}
    assert "triton" in report["locked"]  # Linux-only pins are evaluated for this platform


def test_environment_records_settings_env_and_digest(monkeypatch):
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = collect_environment(load_project(REPO))
    assert env["env"]["PYTHONUNBUFFERED"] == "1" and env["env"]["OMP_NUM_THREADS"] == "3"
    assert env["settings_digest"].startswith("sha256:")
    assert env["device"]["torch"].startswith("2.14.1")


def test_source_digest_covers_every_py_file_by_path_and_bytes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("")
    (tmp_path / "notes.txt").write_text("not source")
    assert source_digest(tmp_path) == "sha256:d88868e75b7f1f2250189b75f1982ee901b75a4b25ab7d64bca11ae1c9d7ba14"
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    assert source_digest(tmp_path) != "sha256:d88868e75b7f1f2250189b75f1982ee901b75a4b25ab7d64bca11ae1c9d7ba14"


def test_every_locked_package_records_where_it_imports_from():
    report = distributions(load_project(REPO))["locked"]
    torch = report["torch"]
    assert torch["imported_from"].endswith("site-packages/torch/__init__.py") and torch["shadowed"] is False
    assert report["certifi"]["imported_from"].endswith("site-packages/certifi/__init__.py")
    assert not any(entry["shadowed"] for entry in report.values())


SHADOW_PROBE = """
import json, sys
from tandem.check.environment import check_provenance, distributions
from tandem.env.settings import load_project
report = distributions(load_project(sys.argv[1]))["locked"]
print(json.dumps({"certifi": report["certifi"], "warning": check_provenance({"TANDEM_PROJECT_DIR": sys.argv[1]})}))
try:
    check_provenance({"TANDEM_PROJECT_DIR": sys.argv[1], "TANDEM_ENV_DIGEST": "sha256:x"})
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_shadowing_copy_earlier_on_sys_path_is_named(tmp_path):
    # As a runtime that puts its own dependencies first on sys.path would (e.g. a client's deps folder).
    shadow = tmp_path / "deps" / "certifi"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("def where(): return ''\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'deps'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-c", SHADOW_PROBE, str(REPO)], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    first = json.loads(out[0])
    assert first["certifi"]["shadowed"] is True
    assert first["certifi"]["imported_from"] == str(shadow / "__init__.py")
    assert first["warning"].startswith("tandem: warning: locked packages load from outside the environment: ")
    assert f"certifi from {shadow / '__init__.py'}" in first["warning"]
    # Inside an image the same finding stops the run.
    assert out[1].startswith("UsageError locked packages load from outside the environment: certifi from ")


class _Installed(importlib.metadata.Distribution):
    """A distribution made of its metadata files alone."""

    def __init__(self, **texts: str):
        self.texts = {"METADATA": "Name: fake-pkg\n", **texts}

    def read_text(self, filename):
        return self.texts.get(filename)

    def locate_file(self, path):
        return Path("/nowhere") / path


def test_top_level_modules_come_from_top_level_txt_else_from_the_record():
    record = "fake_pkg/__init__.py,,\nfake_pkg/core.py,,\nhelper.py,,\nfake_pkg-1.0.dist-info/METADATA,,\n"
    assert top_level_modules(_Installed(RECORD=record)) == ["fake_pkg", "helper"]  # its own name first
    listed = _Installed(RECORD=record, **{"top_level.txt": "helper\nfake_pkg\n\n"})
    assert top_level_modules(listed) == ["fake_pkg", "helper"]
