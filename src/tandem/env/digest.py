"""The environment digest: one hash of the settings block and the lock, baked into both images.

At start-up the trainers compare the digest in their environment with the digest of the settings and lock
that ship beside the source they run, and say so when the image is older than the code.
"""

from __future__ import annotations

import hashlib
import json
import os

from tandem.env.lockfile import file_sha256
from tandem.env.settings import Project, load_project
from tandem.errors import UsageError

DIGEST_VAR = "TANDEM_ENV_DIGEST"
# Derived variables that say where a target keeps data, runs and source: they differ by design.
LAYOUT_VARS = ("TANDEM_DATA_DIR", "TANDEM_RUNS_DIR", "TANDEM_PROJECT_DIR", "PYTHONPATH")


def env_digest(project: Project) -> str:
    payload = json.dumps(
        {"settings": project.settings.as_dict(), "lock": file_sha256(project.lock_path)}, sort_keys=True
    )
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def stale_image_warning(environ: dict[str, str] | None = None) -> str | None:
    """One line when this process runs in an image built from other settings or another lock, else None."""
    environ = os.environ if environ is None else environ
    baked = environ.get(DIGEST_VAR)
    if not baked:
        return None  # not inside a tandem image: nothing to compare with
    try:
        shipped = env_digest(load_project(environ.get("TANDEM_PROJECT_DIR")))
    except UsageError as exc:
        return f"tandem: cannot check the image against the source ({exc})"
    if shipped == baked:
        return None
    return (
        "tandem: this image was built from other settings or another lock than the source it runs "
        f"(image {baked[:19]}, source {shipped[:19]}): rebuild it with `docker compose build` "
        "(Modal rebuilds by itself on the next `modal run`)"
    )
