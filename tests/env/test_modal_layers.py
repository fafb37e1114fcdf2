"""Guards the one reader of Modal's private internals: a new client that changes them fails here first."""

from pathlib import Path

import modal

from tandem.env.modal_layers import modal_layers


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
    assert layers[5].mounts == [(Path(tmp_path), "/app/src")]


def test_copied_local_dir_keeps_its_files(tmp_path):
    image = modal.Image.from_registry("python:3.11-slim-bookworm").add_local_dir(tmp_path, "/app/src", copy=True)
    layer = modal_layers(image)[-1]
    assert layer.commands == ["FROM base", "COPY . /"]
    assert layer.context_files == {"/app/src": Path(tmp_path)}
