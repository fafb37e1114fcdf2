"""tandem parity on copies of the project, each with drift planted on one side, each naming its field."""

import argparse
import dataclasses

import pytest

from support import LITERAL_ENV_VALUES, edit
from tandem.env.commands import parity_command
from tandem.env.image_steps import image_steps
from tandem.env.modal_image import build_modal_image, modal_image_from_steps
from tandem.env.parity import (
    compare,
    docker_facts,
    modal_facts,
    parity_rows,
    source_files_docker,
    source_files_modal,
)
from tandem.env.render import write_generated
from tandem.env.settings import Project, load_project

ACCEPTED_FIELDS = ["install interpreter", "other build commands", "env VIRTUAL_ENV", "env PATH", "user", "HOME"]


def mismatches(project: Project, modal_image=None) -> list[str]:
    rows = compare(docker_facts(project), modal_facts(project, modal_image or build_modal_image(project)), project)
    return [row.field for row in rows if not row.match]


def app_mismatches(project_dir) -> list[str]:
    """What `tandem parity` fails on, with the app imported from the copy as `modal run` imports it."""
    return [row.field for row in parity_rows(load_project(project_dir)) if not row.match]


def modal_with(project: Project, **changes) -> object:
    """The Modal image with one step changed (drift on the Modal side only)."""
    steps = []
    for step in image_steps(project):
        kind = type(step).__name__
        steps.append(dataclasses.replace(step, **changes[kind]) if kind in changes else step)
    return modal_image_from_steps(project, steps)


def test_fresh_project_is_in_parity_and_lists_every_field(project_dir):
    rows = parity_rows(load_project(project_dir))
    assert [row.field for row in rows if not row.match] == []
    fields = [row.field for row in rows]
    for name in (
        "base image", "base image digest", "python", "uv version", "apt packages", "apt options", "lock (sha256)", "installs outside lock",
        "install options", "install interpreter", "install env", "other build commands", "env PATH",
        "env VIRTUAL_ENV", "env TANDEM_ENV_DIGEST", "user", "HOME", "workdir", "source location",
        "source after deps", "function train_dit image", "function train_dit env", "function check env",
        "modal builder version", "source files", "secret-looking files shipped", "add python", "app source mounted",
        "modal secrets", "other files shipped",
    ):  # fmt: skip
        assert name in fields, name
    assert [row.field for row in rows if row.reason] == ACCEPTED_FIELDS
    by_field = {row.field: row for row in rows}
    assert by_field["install options"].docker == "--compile-bytecode --require-hashes --no-build --link-mode copy"
    assert by_field["user"].status.startswith("differs (accepted: Docker runs as uid 1000")


def test_modal_install_line_requires_hashes(project):
    from tandem.env.modal_layers import modal_layers

    commands = [c for layer in modal_layers(build_modal_image(project), "2026.10") for c in layer.commands]
    (install,) = [c for c in commands if "uv pip install" in c]
    assert "--require-hashes --no-build" in install  # a dependency missing from the lock fails the build


@pytest.mark.parametrize(
    "options",
    [
        ("--compile-bytecode", "--require-hashes", "--link-mode", "copy"),  # --no-build dropped
        ("--compile-bytecode", "--no-build", "--link-mode", "copy"),  # --require-hashes dropped
        ("--compile-bytecode", "--require-hashes", "--no-build", "--link-mode", "copy", "--no-deps", "--reinstall"),
        (
            "--compile-bytecode",
            "--require-hashes",
            "--no-build",
            "--link-mode",
            "copy",
            "--index-url",
            "https://x.test",
        ),
    ],
)
def test_install_options_changed_on_modal_side(project, options):
    assert mismatches(project, modal_with(project, Install={"options": options})) == ["install options"]


def test_env_changed_only_in_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    assert mismatches(load_project(project_dir)) == ["env PYTHONUNBUFFERED"]


def test_different_uv_on_modal_side(project):
    assert mismatches(project, modal_with(project, Install={"uv_version": "0.8.0"})) == ["uv version"]


def test_package_added_by_hand_to_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "COPY src ./src", "RUN pip install requests==2.32.0\nCOPY src ./src")
    assert mismatches(load_project(project_dir)) == ["installs outside lock"]


def test_apt_package_added_by_hand_to_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "apt-get install -y gcc", "apt-get install -y curl gcc")
    assert mismatches(load_project(project_dir)) == ["apt packages"]


def test_apt_option_added_by_hand_to_dockerfile(project_dir):
    edit(project_dir / "docker/Dockerfile", "apt-get install -y gcc", "apt-get install -y --no-install-recommends gcc")
    assert mismatches(load_project(project_dir)) == ["apt options"]


def test_different_base_image(project_dir):
    edit(
        project_dir / "docker/Dockerfile",
        "ARG PYTHON_IMAGE=python:3.11-slim-bookworm",
        "ARG PYTHON_IMAGE=python:3.12-slim-bookworm",
    )
    assert mismatches(load_project(project_dir)) == ["base image", "python"]


DIGEST = "sha256:" + "a" * 64


def test_an_unpinned_base_matches_and_is_noted(project_dir, capsys):
    (row,) = [row for row in parity_rows(load_project(project_dir)) if row.field == "base image digest"]
    assert (row.docker, row.modal, row.match, row.reason) == ("(unpinned)", "(unpinned)", True, None)
    assert row.status == (
        "yes (unpinned: both take whatever python:3.11-slim-bookworm names when they build; "
        "`tandem pin-base` records a digest)"
    )
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 0
    assert capsys.readouterr().out.endswith(
        "\nnote: base image digest unpinned: both take whatever python:3.11-slim-bookworm names when they build; "
        "`tandem pin-base` records a digest\n"
    )


def test_a_pinned_base_is_the_digest_on_both_sides(project_dir, capsys):
    edit(project_dir / "pyproject.toml", 'base_image_digest = ""', f'base_image_digest = "{DIGEST}"')
    write_generated(load_project(project_dir))
    rows = {row.field: row for row in parity_rows(load_project(project_dir))}
    assert (rows["base image digest"].docker, rows["base image digest"].modal) == (DIGEST, DIGEST)
    assert rows["base image digest"].status == "yes"
    assert rows["base image"].docker == rows["base image"].modal == "python:3.11-slim-bookworm"
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_digest_recorded_but_not_rendered_fails(project_dir):
    edit(project_dir / "pyproject.toml", 'base_image_digest = ""', f'base_image_digest = "{DIGEST}"')
    assert mismatches(load_project(project_dir)) == ["base image digest", "env TANDEM_ENV_DIGEST"]


def test_a_digest_edited_into_the_dockerfile_fails_alone(project_dir):
    edit(project_dir / "pyproject.toml", 'base_image_digest = ""', f'base_image_digest = "{DIGEST}"')
    write_generated(load_project(project_dir))
    edit(project_dir / "docker/Dockerfile", f"@{DIGEST}", "@sha256:" + "b" * 64)
    assert mismatches(load_project(project_dir)) == ["base image digest"]


def test_stale_dockerfile_after_settings_edit(project_dir):
    edit(
        project_dir / "pyproject.toml",
        'PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True"',
        'PYTORCH_CUDA_ALLOC_CONF = "max_split_size_mb:128"',
    )
    assert mismatches(load_project(project_dir)) == ["env PYTORCH_CUDA_ALLOC_CONF", "env TANDEM_ENV_DIGEST"]


def test_different_lock_content(project_dir):
    edit(project_dir / "requirements-modal.txt", "# This file", "# Edited by hand\n# This file")
    # Both sides install the file on disk; what goes stale is the digest baked into the Dockerfile.
    assert mismatches(load_project(project_dir)) == ["env TANDEM_ENV_DIGEST"]


def test_source_before_dependencies_is_caught(project_dir):
    path = project_dir / "docker/Dockerfile"
    text = path.read_text().replace("COPY src ./src\n", "")
    path.write_text(
        text.replace(
            "COPY --from=builder /opt/venv /opt/venv", "COPY src /app/src\nCOPY --from=builder /opt/venv /opt/venv"
        )
    )
    assert mismatches(load_project(project_dir)) == ["source after deps"]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("PATH=/opt/venv/bin:$PATH", "PATH=/usr/local/bin:$PATH", "env PATH"),
        ("VIRTUAL_ENV=/opt/venv ", "VIRTUAL_ENV=/srv/venv ", "env VIRTUAL_ENV"),
        ("USER tandem", "USER nobody", "user"),
        ("ENV VIRTUAL_ENV", "ENV UV_INDEX_URL=https://x.test\nENV VIRTUAL_ENV", "env UV_INDEX_URL"),
        ("RUN --mount=type=cache", "ENV PIP_INDEX_URL=https://x.test\nRUN --mount=type=cache", "install env"),
        (
            "COPY --from=builder",
            "RUN curl -fsS https://x.test/setup.sh | sh\nCOPY --from=builder",
            "other build commands",
        ),
    ],
)
def test_layout_fields_beyond_the_accepted_differences_fail(project_dir, old, new, field):
    edit(project_dir / "docker/Dockerfile", old, new)
    assert field in mismatches(load_project(project_dir))


# -----------------------------------------------------------------------------
# the app as `modal run modal_app/train.py` loads it


def test_image_extended_in_the_app_fails(project_dir):
    edit(
        project_dir / "modal_app/functions.py",
        "image = build_modal_image(project)",
        'image = build_modal_image(project).run_commands("pip install requests==2.32.0")',
    )
    assert {"installs outside lock", "source after deps"} & set(app_mismatches(project_dir))


def test_function_env_in_the_app_fails(project_dir):
    edit(
        project_dir / "modal_app/functions.py",
        "resources.TRAIN_TIMEOUT, train=True))\ndef train_classifier",
        'resources.TRAIN_TIMEOUT, train=True), env={"OMP_NUM_THREADS": "3"})\ndef train_classifier',
    )
    assert app_mismatches(project_dir) == ["function train_classifier env"]


def test_older_builder_version_adds_modal_installs(project_dir):
    edit(project_dir / "pyproject.toml", 'modal_builder_version = "2026.10"', 'modal_builder_version = "2024.10"')
    project = load_project(project_dir)
    write_generated(project)
    failed = app_mismatches(project_dir)
    assert "installs outside lock" in failed and "other build commands" in failed


def test_builder_version_the_client_cannot_build_fails(project_dir):
    edit(project_dir / "pyproject.toml", 'modal_builder_version = "2026.10"', 'modal_builder_version = "2031.01"')
    write_generated(load_project(project_dir))
    assert "modal builder version" in app_mismatches(project_dir)


def test_builder_version_from_the_environment_is_refused(project_dir, monkeypatch, capsys):
    monkeypatch.setenv("MODAL_IMAGE_BUILDER_VERSION", "2024.10")
    from tandem.cli import main

    assert main(["parity", "--project", str(project_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MODAL_IMAGE_BUILDER_VERSION=2024.10" in err[0] and '"2026.10"' in err[0]


# -----------------------------------------------------------------------------
# the same files reach both images


def plant_secrets(project_dir):
    (project_dir / "src" / ".env").write_text("WANDB_API_KEY=planted\n")
    (project_dir / "src" / "tandem" / ".env.local").write_text("TOKEN=planted\n")
    (project_dir / "src" / "tandem" / "server.pem").write_text("planted\n")


def test_planted_env_file_reaches_neither_image(project_dir):
    plant_secrets(project_dir)
    project = load_project(project_dir)
    docker, modal = source_files_docker(project), source_files_modal(project, build_modal_image(project))
    assert docker == modal == {"src/tandem/__init__.py"}
    assert app_mismatches(project_dir) == []


def test_narrower_dockerignore_ships_the_env_file(project_dir):
    plant_secrets(project_dir)
    path = project_dir / ".dockerignore"
    path.write_text("\n".join(line for line in path.read_text().splitlines() if ".env" not in line) + "\n")
    assert app_mismatches(project_dir) == ["source files", "secret-looking files shipped"]


def test_narrower_modal_ignore_ships_the_env_file(project_dir):
    plant_secrets(project_dir)
    project = load_project(project_dir)
    narrow = modal_with(project, Source={"ignore": ("**/__pycache__", "**/*.pyc")})
    assert source_files_modal(project, narrow) == {
        "src/.env",
        "src/tandem/.env.local",
        "src/tandem/__init__.py",
        "src/tandem/server.pem",
    }


# -----------------------------------------------------------------------------


def test_settings_edit_then_render_changes_both_and_stays_in_parity(project_dir):
    before = load_project(project_dir)
    docker_before, modal_before = docker_facts(before), modal_facts(before, build_modal_image(before))
    edit(project_dir / "pyproject.toml", 'HF_XET_HIGH_PERFORMANCE = "1"', 'HF_XET_HIGH_PERFORMANCE = "0"')
    after = load_project(project_dir)
    write_generated(after)
    docker_after, modal_after = docker_facts(after), modal_facts(after, build_modal_image(after))
    assert docker_before.env["HF_XET_HIGH_PERFORMANCE"] == modal_before.env["HF_XET_HIGH_PERFORMANCE"] == "1"
    assert docker_after.env["HF_XET_HIGH_PERFORMANCE"] == modal_after.env["HF_XET_HIGH_PERFORMANCE"] == "0"
    assert app_mismatches(project_dir) == []


def test_parity_command_prints_table_and_exit_code(project_dir, capsys):
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 0
    out = capsys.readouterr().out
    assert "field" in out and "match" in out and "differ as accepted" in out and "differs (accepted: " in out
    edit(project_dir / "docker/Dockerfile", "PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED=0")
    assert parity_command(argparse.Namespace(project=str(project_dir))) == 1
    assert "env PYTHONUNBUFFERED" in capsys.readouterr().err


@pytest.mark.parametrize("value", LITERAL_ENV_VALUES)
def test_env_values_survive_quoting_on_both_sides(project_dir, value):
    import dockerfile

    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    edit(project_dir / "pyproject.toml", 'PYTHONUNBUFFERED = "1"', f'PYTHONUNBUFFERED = "1"\nODD = "{escaped}"')
    before = [c.cmd for c in dockerfile.parse_file(str(project_dir / "docker/Dockerfile"))]
    project = load_project(project_dir)
    write_generated(project)
    assert docker_facts(project).env["ODD"] == value == modal_facts(project, build_modal_image(project)).env["ODD"]
    assert [c.cmd for c in dockerfile.parse_file(str(project_dir / "docker/Dockerfile"))] == before
    assert app_mismatches(project_dir) == []


def test_app_that_does_not_pin_the_builder_version_fails(project_dir):
    edit(project_dir / "modal_app/functions.py", "pin_builder_version(project)", "pass")
    assert app_mismatches(project_dir) == ["modal builder version"]


def test_thread_variables_are_set_from_the_settings_in_both_images_and_locally(project_dir):
    from tandem.env.compose import render_env_file

    edit(project_dir / "pyproject.toml", "threads = 4", "threads = 3")
    project = load_project(project_dir)
    write_generated(project)
    docker, modal = docker_facts(project), modal_facts(project, build_modal_image(project))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert docker.env[name] == modal.env[name] == "3"
        assert f"{name}=3" in render_env_file(project).splitlines()
    assert app_mismatches(project_dir) == []


# -----------------------------------------------------------------------------
# blind spots: each planted in the copied app is one named field, exit 1, no traceback

FUNCTIONS = "modal_app/functions.py"
IMAGE_LINE = "image = build_modal_image(project)"


def parity_fails_on(project_dir, capsys) -> list[str]:
    """`tandem parity` on the copy: exit 1, every failed field named on stderr, and no traceback."""
    from tandem.cli import main

    assert main(["parity", "--project", str(project_dir)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    (line,) = [line for line in err.splitlines() if line.startswith("parity FAILED on: ")]
    return line.removeprefix("parity FAILED on: ").split(", ")


def plant_secret(project_dir, function="sample", name="wandb"):
    edit(
        project_dir / FUNCTIONS,
        f"train=False))\ndef {function}(",
        f'train=False), secrets=[modal.Secret.from_name("{name}")])\ndef {function}(',
    )


def list_secrets(project_dir, *names):
    listed = ", ".join(f'"{name}"' for name in names)
    edit(project_dir / "pyproject.toml", "modal_secrets = []", f"modal_secrets = [{listed}]")


def test_secret_not_in_the_settings_fails(project_dir, capsys):
    plant_secret(project_dir)
    assert parity_fails_on(project_dir, capsys) == ["modal secrets"]


def test_secret_listed_in_the_settings_passes(project_dir):
    plant_secret(project_dir)
    plant_secret(project_dir, "check")
    list_secrets(project_dir, "wandb")
    rows = {row.field: row for row in parity_rows(load_project(project_dir))}
    assert rows["modal secrets"].modal == "wandb" and app_mismatches(project_dir) == []


def test_secret_listed_that_no_function_uses_fails(project_dir, capsys):
    plant_secret(project_dir)
    list_secrets(project_dir, "wandb", "hf")
    assert parity_fails_on(project_dir, capsys) == ["modal secrets"]


@pytest.mark.parametrize("value", ['["a b"]', '["x", "x"]', '"wandb"', "[1]"])
def test_bad_secret_list_is_refused(project_dir, value):
    from tandem.errors import UsageError

    edit(project_dir / "pyproject.toml", "modal_secrets = []", f"modal_secrets = {value}")
    with pytest.raises(UsageError, match="modal_secrets"):
        load_project(project_dir)


def test_env_file_added_anywhere_fails(project_dir, capsys):
    (project_dir / ".env").write_text("WANDB_API_KEY=planted\n")
    edit(project_dir / FUNCTIONS, IMAGE_LINE, f'{IMAGE_LINE}.add_local_file(project.root / ".env", "/root/.env")')
    assert parity_fails_on(project_dir, capsys) == ["other files shipped", "secret-looking files shipped"]
    rows = {row.field: row for row in parity_rows(load_project(project_dir))}
    assert rows["secret-looking files shipped"].modal == ".env"
    assert "/root/.env <- .env" in rows["other files shipped"].modal


def test_secret_in_the_app_package_fails(project_dir, capsys):
    (project_dir / "modal_app" / "server.pem").write_text("planted\n")  # mounted with the app's source
    assert parity_fails_on(project_dir, capsys) == ["secret-looking files shipped"]


@pytest.mark.parametrize(
    "added",
    [
        '.add_local_file(project.root / "compose.yaml", "/app/compose.yaml")',
        '.add_local_dir(project.root / "docker", "/app/docker")',
        '.add_local_dir(project.root / "src", "/root/src")',
    ],
)
def test_extra_local_file_or_dir_fails(project_dir, capsys, added):
    edit(project_dir / FUNCTIONS, IMAGE_LINE, IMAGE_LINE + added)
    failed = parity_fails_on(project_dir, capsys)
    assert failed == (["source location"] if "src" in added else ["other files shipped"])


def test_file_copied_by_hand_into_the_dockerfile_fails(project_dir, capsys):
    edit(project_dir / "docker/Dockerfile", "COPY src ./src", "COPY src ./src\nCOPY compose.yaml ./")
    assert parity_fails_on(project_dir, capsys) == ["other files shipped"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("modal.App(APP_NAME, image=image)", "modal.App(APP_NAME, image=image, include_source=False)"),
        ("train=True))\ndef train_dit(", "train=True), include_source=False)\ndef train_dit("),
    ],
)
def test_app_source_left_out_fails(project_dir, capsys, old, new):
    edit(project_dir / FUNCTIONS, old, new)
    assert parity_fails_on(project_dir, capsys) == ["app source mounted"]


def test_python_source_added_in_the_app_fails(project_dir, capsys):
    edit(project_dir / FUNCTIONS, IMAGE_LINE, f'{IMAGE_LINE}.add_local_python_source("tandem")')
    assert parity_fails_on(project_dir, capsys) == ["other files shipped"]


@pytest.mark.parametrize("version", ["3.12", "3.11", "3.99"])  # 3.99: one this client cannot add
def test_added_python_fails(project_dir, capsys, version):
    # The app's base image made with add_python: a standalone interpreter the base image does not have.
    edit(
        project_dir / FUNCTIONS,
        IMAGE_LINE,
        "plain = modal.Image.from_registry\n"
        f'modal.Image.from_registry = lambda tag, **kw: plain(tag, add_python="{version}", **kw)\n'
        f"{IMAGE_LINE}\n"
        "modal.Image.from_registry = plain",
    )
    assert parity_fails_on(project_dir, capsys) == ["add python"]
    rows = {row.field: row for row in parity_rows(load_project(project_dir))}
    assert rows["add python"].modal.startswith(version) and rows["add python"].docker == "(none)"
