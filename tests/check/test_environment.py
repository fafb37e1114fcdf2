from support import REPO
from tandem.check.environment import collect_environment, distributions, source_digest
from tandem.env.settings import load_project


def test_this_environment_matches_the_lock():
    report = distributions(load_project(REPO))
    torch = report["locked"]["torch"]
    assert torch["locked"] == "2.14.1" and torch["matches_lock"]
    assert all(entry["matches_lock"] for entry in report["locked"].values())
    assert "triton" in report["locked"]  # Linux-only pins are evaluated for this platform


def test_environment_records_settings_env_and_digest(monkeypatch):
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = collect_environment(load_project(REPO))
    assert env["env"]["PYTHONUNBUFFERED"] == "1" and env["env"]["OMP_NUM_THREADS"] == "3"
    assert env["settings_digest"].startswith("sha256:")
    assert env["device"]["torch"].startswith("2.14.1")


def test_source_digest_is_stable():
    assert source_digest() == source_digest()
