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

from tandem.errors import UsageError


@dataclass
class ModalLayer:
    commands: list[str]  # Dockerfile commands, starting with 'FROM ...'
    context_files: dict[str, Path] = field(default_factory=dict)  # build-context name -> local file
    # (local file, path in the container) of every file a mount adds when a container starts
    mounted_files: list[tuple[Path, str]] = field(default_factory=list)
    # (local file, path in the image) of every file an add_local_* with copy=True builds in (`COPY . /`)
    copied_files: list[tuple[Path, str]] = field(default_factory=list)
    add_python: str = ""  # the standalone Python this layer adds (`add_python=`); its commands are left out


@dataclass
class ModalFunction:
    """What a Function of a loaded app would ask Modal for."""

    name: str
    image: modal.Image | None
    env: dict[str, str]  # set on the Function itself (`env=` or Secret.from_dict)
    secrets: list[str]  # the names of the other Secrets it uses (from_name): their values never leave Modal
    # where the app's own source lands (include_source), and every (local file, path in the container) of it
    app_source: list[str]
    app_files: list[tuple[Path, str]]
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
        if "split_image" in scope and "single_layer_image" in scope:  # from_registry(add_python=...)
            current = scope["split_image"] if builder_version > "2025.06" else scope["single_layer_image"]
            continue
        if "dockerfile_function" not in scope:
            raise RuntimeError(
                f"modal {modal.__version__}: unrecognised image layer (closure vars {sorted(scope)}); "
                "update tandem.env.modal_layers for this client version"
            )
        layer = _dockerfile_layer(scope["dockerfile_function"], builder_version)
        try:
            context_mount = scope.get("context_mount_function") and scope["context_mount_function"](builder_version)
        except modal.exception.InvalidError:
            if not layer.add_python:
                raise
            context_mount = None  # a Python this client cannot add: named in add_python already
        if context_mount is not None and context_mount._entries is not None:  # add_local_* with copy=True
            copied = mount_files(context_mount)
            layer.copied_files = [(local, "/" + remote.lstrip("/")) for local, remote in copied]
            layer.context_files.update({str(remote): local for local, remote in copied})
        layers.append(layer)
        bases = scope.get("base_images") or {}
        current = next(iter(bases.values()), None)
    return layers[::-1]


def _dockerfile_layer(dockerfile_function, builder_version: str) -> ModalLayer:
    """One layer's commands; those of a standalone Python (`add_python=`) are kept apart, in add_python."""
    from modal._image import _Image

    add_python = inspect.getclosurevars(dockerfile_function).nonlocals.get("add_python")
    try:
        spec = dockerfile_function(builder_version)
    except modal.exception.InvalidError as exc:  # a Python this client cannot add at this builder version
        if not add_python:
            raise
        tag = inspect.getclosurevars(dockerfile_function).nonlocals.get("tag", "base")
        return ModalLayer(commands=[f"FROM {tag}"], add_python=f"{add_python} (cannot be added: {exc})")
    commands = list(spec.commands)
    if add_python:
        plain = _Image._registry_setup_commands("base", builder_version, [])
        added = set(_Image._registry_setup_commands("base", builder_version, [], add_python)) - set(plain)
        commands = [c for c in commands if c not in added]
    return ModalLayer(
        commands=commands,
        context_files={k: Path(v) for k, v in spec.context_files.items()},
        add_python=add_python or "",
    )


def mount_files(mount) -> list[tuple[Path, str]]:
    """Every (local file, remote path) the mount would upload, with its ignore rules applied (a folder that
    is not there uploads nothing here; Modal would stop at start-up). A mount Modal serves by name (its
    client, a standalone Python) has no local files."""
    from modal._utils.package_utils import ModuleNotMountable
    from modal.mount import _MountedPythonModule

    files: list[tuple[Path, str]] = []
    for entry in mount._entries or []:
        if isinstance(entry, _MountedPythonModule):  # add_local_python_source, or the app's own package
            try:
                files += entry.get_files_to_upload()
            except ModuleNotMountable as exc:
                raise UsageError(f"the Modal app adds Python source {entry.module_name!r}: {exc}") from None
        elif Path(getattr(entry, "local_dir", None) or entry.local_file).exists():
            files += entry.get_files_to_upload()
    return sorted((Path(local), str(remote)) for local, remote in files)


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
                named.append(secret._name or secret._rep)
        # The app's own source (include_source) is the one mount with local entries; the client's is named.
        local_mounts = [mount for mount in spec.mounts if mount._entries]
        app_source = sorted(
            str(remote) for mount in local_mounts for entry in mount._entries for _, remote in entry.top_level_paths()
        )
        app_files = [file for mount in local_mounts for file in mount_files(mount)]
        image = synchronizer._translate_out(spec.image) if spec.image is not None else None
        functions.append(
            ModalFunction(name, image, env, named, app_source, app_files, spec.gpus, spec.cpu, spec.memory)
        )
    return functions
