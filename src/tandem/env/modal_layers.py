"""What Modal would build and run, read offline from the installed client.

This reads private internals of the pinned modal version (each layer's loader closure, each Function's
spec, each mount's file list). It is kept to this one module, and tests/env/test_modal_layers.py fails
loudly when a new client changes what it reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import modal


@dataclass
class ModalLayer:
    commands: list[str]  # Dockerfile commands, starting with 'FROM ...'
    context_files: dict[str, Path] = field(default_factory=dict)  # build-context name -> local file
    # (local file, path in the container) of every file a mount adds when a container starts
    mounted_files: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class ModalFunction:
    """What a Function of a loaded app would ask Modal for."""

    name: str
    image: modal.Image | None
    env: dict[str, str]  # set on the Function itself (`env=` or Secret.from_dict)
    secrets: list[str]  # the other Secrets it names (from_name): their values never leave Modal
    gpu: str | None
    cpu: float | tuple | None
    memory: int | tuple | None


def builder_versions() -> tuple[str, ...]:
    """The image builder versions this client can build with (PREVIEW excluded)."""
    from modal._image import ImageBuilderVersion

    return tuple(v for v in get_args(ImageBuilderVersion) if v != "PREVIEW")


def modal_layers(image: modal.Image, builder_version: str) -> list[ModalLayer]:
    """The image's layers, base first, as the builder of that version would run them."""
    from modal._utils.async_utils import synchronizer

    layers: list[ModalLayer] = []
    current = synchronizer._translate_in(image)
    while current is not None:
        scope = inspect.getclosurevars(current._load).nonlocals
        if "mount" in scope and "base_image" in scope:  # add_local_* with copy=False
            layers.append(ModalLayer(commands=[], mounted_files=mount_files(scope["mount"])))
            current = scope["base_image"]
            continue
        if "dockerfile_function" not in scope:
            raise RuntimeError(
                f"modal {modal.__version__}: unrecognised image layer (closure vars {sorted(scope)}); "
                "update tandem.env.modal_layers for this client version"
            )
        spec = scope["dockerfile_function"](builder_version)
        layer = ModalLayer(
            commands=list(spec.commands), context_files={k: Path(v) for k, v in spec.context_files.items()}
        )
        context_mount = scope.get("context_mount_function") and scope["context_mount_function"](builder_version)
        if context_mount is not None:  # add_local_* with copy=True: COPY . / from this mount
            layer.context_files.update({str(remote): local for local, remote in mount_files(context_mount)})
        layers.append(layer)
        bases = scope.get("base_images") or {}
        current = next(iter(bases.values()), None)
    return layers[::-1]


def mount_files(mount) -> list[tuple[Path, str]]:
    """Every (local file, remote path) the mount would upload, with its ignore rules applied (a folder that
    is not there uploads nothing here; Modal would stop at start-up)."""
    entries = [e for e in mount._entries if Path(getattr(e, "local_dir", None) or e.local_file).exists()]
    return sorted((Path(local), str(remote)) for entry in entries for local, remote in entry.get_files_to_upload())


def app_functions(app: modal.App) -> list[ModalFunction]:
    """The Functions registered on an app (as `modal run` imported it), with their image and options."""
    from modal._utils.async_utils import synchronizer

    functions = []
    for name, function in synchronizer._translate_in(app)._local_state.functions.items():
        spec = function._spec
        env: dict[str, str] = {}
        named = []
        for secret in spec.secrets:
            if secret._load_env_dict is not None:
                env.update(secret._load_env_dict())
            else:
                named.append(secret._rep)
        image = synchronizer._translate_out(spec.image) if spec.image is not None else None
        functions.append(ModalFunction(name, image, env, named, spec.gpus, spec.cpu, spec.memory))
    return functions
