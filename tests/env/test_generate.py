import pytest

from support import REPO, edit
from tandem.env.generate import staleness_diff, write_generated
from tandem.env.settings import load_project
from tandem.errors import UsageError


def test_committed_generated_files_are_fresh():
    assert staleness_diff(load_project(REPO)) == ""


def test_settings_edit_makes_dockerfile_stale_with_a_diff(project_dir):
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    diff = staleness_diff(load_project(project_dir))
    assert "-    HF_XET_HIGH_PERFORMANCE=1" in diff and "+    HF_XET_HIGH_PERFORMANCE=0" in diff
    write_generated(load_project(project_dir))
    assert staleness_diff(load_project(project_dir)) == ""


def test_bad_lock_writes_nothing(project_dir):
    before = {p: p.read_text() for p in (project_dir / "docker/Dockerfile", project_dir / "compose.yaml")}
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    (project_dir / "requirements-modal.txt").write_text("torch>=2\n")
    with pytest.raises(UsageError, match="not pinned"):
        write_generated(load_project(project_dir))
    assert {p: p.read_text() for p in before} == before
    assert not list(project_dir.glob("**/.Dockerfile.*")) and not list(project_dir.glob(".compose*"))
