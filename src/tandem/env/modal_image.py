"""The Modal image, made by walking the same image steps as docker/Dockerfile, in the same order."""

from __future__ import annotations

import os

import modal

from tandem.env.image_steps import (
    MODAL_BUILDER_INSTALL_OPTIONS,
    AptInstall,
    Base,
    Env,
    Install,
    Source,
    Step,
    Workdir,
    image_steps,
)
from tandem.env.settings import Project
from tandem.errors import UsageError

BUILDER_VERSION_VAR = "MODAL_IMAGE_BUILDER_VERSION"


def build_modal_image(project: Project) -> modal.Image:
    return modal_image_from_steps(project, image_steps(project))


def modal_image_from_steps(project: Project, steps: list[Step]) -> modal.Image:
    image = None
    for step in steps:
        match step:
            case Base(image=ref):
                image = modal.Image.from_registry(ref)
            case AptInstall(packages=packages):
                image = image.apt_install(*packages)
            case Install(lock=lock, uv_version=uv_version, options=options):
                extra = [o for o in options if o not in MODAL_BUILDER_INSTALL_OPTIONS]
                image = image.uv_pip_install(
                    requirements=[str(project.root / lock)], uv_version=uv_version, extra_options=" ".join(extra)
                )
            case Env(values=values):
                image = image.env(values)
            case Workdir(path=path):
                image = image.workdir(path)
            case Source(files=files, directory=directory, ignore=ignore):
                # Mounted at start-up (copy=False): editing code never rebuilds the image.
                workdir = project.settings.workdir
                for name in files:
                    image = image.add_local_file(project.root / name, f"{workdir}/{name}")
                image = image.add_local_dir(project.root / directory, f"{workdir}/{directory}", ignore=list(ignore))
    return image


def check_builder_version(project: Project, environ=os.environ) -> str:
    """The settings' image builder version; refuses a MODAL_IMAGE_BUILDER_VERSION that says otherwise."""
    wanted = project.settings.modal_builder_version
    given = environ.get(BUILDER_VERSION_VAR)
    if given and given != wanted:
        raise UsageError(
            f"{BUILDER_VERSION_VAR}={given} in this environment, but the settings pin modal_builder_version = "
            f'"{wanted}": unset the variable, or change the setting (and run `tandem parity`)'
        )
    return wanted


def pin_builder_version(project: Project, environ=os.environ) -> str:
    """Make Modal build with the settings' image builder version, not the workspace's or a local config's
    (an older one adds Modal's own installs to the image)."""
    environ[BUILDER_VERSION_VAR] = check_builder_version(project, environ)
    return environ[BUILDER_VERSION_VAR]
