"""Guards the one reader of Modal's private internals: a new client that changes them fails here first."""

import modal

from tandem.env.modal_layers import app_functions, builder_versions, modal_layers


def test_reads_commands_context_files_and_mounts(tmp_path):
    lock = tmp_path / "req.txt"
    lock.write_text("tqdm==4.66.0\n")
    image = (
        modal.Image.from_registry("python:3.11-slim-bookworm")
        .apt_install("git")
        .env({"A": "1", "B": "x y"})
        .uv_pip_install(requirements=[str(lock)], uv_version="0.9.1")
        .workdir("/app")
        .add_local_dir(tmp_path, "/app/src")
    )
    layers = modal_layers(image, "2025.06")
    assert [layer.commands for layer in layers[:3]] == [
        ["FROM python:3.11-slim-bookworm"],
        ["FROM base", "RUN apt-get update", "RUN apt-get install -y git"],
        ["FROM base", "ENV A=1", "ENV B='x y'"],
    ]
    install = layers[3]
    assert install.commands[1] == "COPY --from=ghcr.io/astral-sh/uv:0.9.1 /uv /.uv/uv"
    assert install.commands[-1].startswith("RUN /.uv/uv pip install --python $(command -v python)")
    assert list(install.context_files.values()) == [lock]
    assert layers[4].commands == ["FROM base", "WORKDIR /app"]
    assert layers[5].mounted_files == [(lock.resolve(), "/app/src/req.txt")]


def test_copied_local_dir_keeps_its_files(tmp_path):
    (tmp_path / "a.py").write_text("")
    image = modal.Image.from_registry("python:3.11-slim-bookworm").add_local_dir(tmp_path, "/app/src", copy=True)
    layer = modal_layers(image, "2026.10")[-1]
    assert layer.commands == ["FROM base", "COPY . /"]
    assert layer.context_files == {"/app/src/a.py": (tmp_path / "a.py").resolve()}


def test_mount_ignore_rules_are_applied(tmp_path):
    for name in ("keep.py", ".env", "sub/.env.local", "sub/keep.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    image = modal.Image.from_registry("python:3.11-slim-bookworm").add_local_dir(
        tmp_path, "/app/src", ignore=["**/.env*"]
    )
    assert [remote for _, remote in modal_layers(image, "2026.10")[-1].mounted_files] == [
        "/app/src/keep.py",
        "/app/src/sub/keep.txt",
    ]


def test_builder_versions_of_the_pinned_client():
    assert builder_versions() == ("2023.12", "2024.04", "2024.10", "2025.06", "2026.10")


def test_function_options_and_env_are_read(tmp_path):
    app = modal.App("t")
    image = modal.Image.from_registry("python:3.11-slim-bookworm")

    @app.function(image=image, gpu="A100:2", cpu=4.0, memory=8192, env={"A": "1"}, serialized=True)
    def f():
        pass

    (function,) = app_functions(app)
    assert function.name.endswith(".f")
    assert (function.gpu, function.cpu, function.memory, function.env) == (
        "A100:2",
        4.0,
        8192,
        {"A": "1"},
    )
    assert modal_layers(function.image, "2026.10")[0].commands == ["FROM python:3.11-slim-bookworm"]


def test_written_for_this_client():
    assert modal.__version__ == "1.6.4", "tandem.env.modal_layers reads modal 1.6.4's internals: check them again"


def test_added_python_is_kept_apart_from_the_commands():
    image = modal.Image.from_registry("python:3.11-slim-bookworm", add_python="3.12").env({"A": "1"})
    for version in ("2025.06", "2026.10"):
        layers = modal_layers(image, version)
        assert [layer.add_python for layer in layers if layer.add_python] == ["3.12"]
        commands = [c for layer in layers for c in layer.commands]
        assert commands[0] == "FROM python:3.11-slim-bookworm" and "ENV A=1" in commands
        assert not any("/python" in c or "TERMINFO" in c for c in commands)


def test_python_source_and_named_secrets_and_app_source_are_read(tmp_path):
    app = modal.App("t")
    image = modal.Image.from_registry("python:3.11-slim-bookworm").add_local_python_source("tandem")

    @app.function(image=image, secrets=[modal.Secret.from_name("wandb")], serialized=True)
    def f():
        pass

    (function,) = app_functions(app)
    assert function.secrets == ["wandb"]
    assert function.app_source == [] and function.app_files == []  # a serialized Function mounts no source
    remotes = [remote for _, remote in modal_layers(function.image, "2026.10")[-1].mounted_files]
    assert "/root/tandem/__init__.py" in remotes and all(r.endswith(".py") for r in remotes)
