import pytest

from support import copy_project
from tandem.env.settings import load_project


@pytest.fixture
def project_dir(tmp_path):
    return copy_project(tmp_path)


@pytest.fixture
def project(project_dir):
    return load_project(project_dir)
