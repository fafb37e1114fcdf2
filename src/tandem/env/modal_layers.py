"""What Modal's builder would run for an image, read offline from the installed client.

This reads private internals of the pinned modal version (each layer's loader closure). It is kept to this
one function, and tests/env/test_modal_layers.py fails loudly when a new client changes what it reads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

import modal


@dataclass
class ModalLayer:
    commands: list[str]  # Dockerfile commands, starting with 'FROM ...'
    context_files: dict[str, Path] = field(default_factory=dict)  # build-context name -> local file
    mounts: list[tuple[Path, str]] = field(default_factory=list)  # (local path, remote path), added at start


def modal_layers(image: modal.Image, builder_version: str | None = None) -> list[ModalLayer]:
    """The image's layers, base first."""
    from modal._image import LATEST_IMAGE_BUILDER_VERSION
    from modal._utils.async_utils import synchronizer

    version = builder_version or LATEST_IMAGE_BUILDER_VERSION
    layers: list[ModalLayer] = []
    current = synchronizer._translate_in(image)
    while current is not None:
        scope = inspect.getclosurevars(current._load).nonlocals
        if "mount" in scope and "base_image" in scope:  # add_local_* with copy=False
            entries = scope["mount"]._entries
            layers.append(ModalLayer(commands=[], mounts=[(Path(e_local(e)), str(e.remote_path)) for e in entries]))
            current = scope["base_image"]
            continue
        if "dockerfile_function" not in scope:
            raise RuntimeError(
                f"modal {modal.__version__}: unrecognised image layer (closure vars {sorted(scope)}); "
                "update tandem.env.modal_layers for this client version"
            )
        spec = scope["dockerfile_function"](version)
        layer = ModalLayer(
            commands=list(spec.commands), context_files={k: Path(v) for k, v in spec.context_files.items()}
        )
        context_mount = scope.get("context_mount_function") and scope["context_mount_function"](version)
        if context_mount is not None:  # add_local_* with copy=True: COPY . / from this mount
            layer.context_files.update({str(e.remote_path): Path(e_local(e)) for e in context_mount._entries})
        layers.append(layer)
        bases = scope.get("base_images") or {}
        current = next(iter(bases.values()), None)
    return layers[::-1]


def e_local(entry) -> str:
    return str(getattr(entry, "local_file", None) or entry.local_dir)
