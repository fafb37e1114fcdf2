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
