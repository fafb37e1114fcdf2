from support import edit
from tandem.env.digest import DIGEST_VAR, env_digest, stale_image_warning
from tandem.env.image_steps import image_env
from tandem.env.settings import load_project


def test_digest_moves_with_settings_and_lock(project_dir):
    before = env_digest(load_project(project_dir))
    edit(project_dir / "pyproject.toml", 'modal_gpu = "H100"', 'modal_gpu = "A100"')
    after_settings = env_digest(load_project(project_dir))
    edit(project_dir / "requirements-modal.txt", "tqdm==", "tqdm ==")
    after_lock = env_digest(load_project(project_dir))
    assert len({before, after_settings, after_lock}) == 3


def test_digest_ignores_the_rest_of_pyproject(project_dir):
    before = env_digest(load_project(project_dir))
    edit(project_dir / "pyproject.toml", 'version = "0.1.0"', 'version = "0.2.0"')
    assert env_digest(load_project(project_dir)) == before


def test_image_env_carries_digest(project):
    assert image_env(project)[DIGEST_VAR] == env_digest(project)


def test_stale_image_is_reported_in_one_line(project_dir):
    project = load_project(project_dir)
    environ = {DIGEST_VAR: env_digest(project), "TANDEM_PROJECT_DIR": str(project_dir)}
    assert stale_image_warning(environ) is None
    edit(project_dir / "pyproject.toml", 'modal_gpu = "H100"', 'modal_gpu = "A100"')
    warning = stale_image_warning(environ)
    assert warning and "\n" not in warning and "docker compose build" in warning


def test_no_warning_outside_an_image():
    assert stale_image_warning({}) is None
