import pytest

from support import copy_project
from tandem.env.settings import load_project


@pytest.fixture
def project_dir(tmp_path):
    return copy_project(tmp_path)


@pytest.fixture
def project(project_dir):
    return load_project(project_dir)


@pytest.fixture(autouse=True)
def fresh_shell(monkeypatch):
    # Importing the Modal app (tests/modal_app does) pins MODAL_IMAGE_BUILDER_VERSION for the whole test
    # process; a user's shell running `tandem parity` has none unless they set it.
    monkeypatch.delenv("MODAL_IMAGE_BUILDER_VERSION", raising=False)
