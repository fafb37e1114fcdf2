"""The Modal image, built from the same settings and lock as docker/Dockerfile, in the same order."""

from __future__ import annotations

import modal

from tandem.env.digest import image_env
from tandem.env.dockerfile import INSTALL_OPTIONS, SOURCE_DIR, SOURCE_FILES
from tandem.env.lockfile import read_lock
from tandem.env.settings import Project

SOURCE_IGNORE = ["**/__pycache__", "**/*.pyc"]


def build_modal_image(project: Project) -> modal.Image:
    read_lock(project.lock_path)
    s = project.settings
    image = modal.Image.from_registry(s.base_ref)
    if s.apt_packages:
        image = image.apt_install(*s.apt_packages)
    image = image.env(image_env(project)).uv_pip_install(
        requirements=[str(project.lock_path)], uv_version=s.uv_version, extra_options=" ".join(INSTALL_OPTIONS)
    )
    image = image.workdir(s.workdir)
    # Source last and mounted at start-up (copy=False): editing code never rebuilds the image.
    for name in SOURCE_FILES:
        image = image.add_local_file(project.root / name, f"{s.workdir}/{name}")
    return image.add_local_dir(project.root / SOURCE_DIR, f"{s.workdir}/{SOURCE_DIR}", ignore=SOURCE_IGNORE)
