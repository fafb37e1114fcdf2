"""`tox -e modal`: `tandem check` in a Modal GPU container, compared with the local and Docker fingerprints
through `tandem check --compare` (which compares GPU sections only between GPUs of the same kind).

    python -m modal_app.compare_fingerprints [--gpu H100] [--docker-fingerprint PATH | --no-docker]

The fingerprints land in outputs/fingerprints/: modal-<gpu>.json, local.json, docker.json.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from tandem.env import modal_login as login

from . import resources

COMMAND = "tox -e modal"


def docker_fingerprint(folder: Path, project_root: Path) -> Path | None:
    """The compose `check` service's fingerprint, written into `folder`; None without a Docker engine."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("docker: no engine reachable, so Modal is compared with this machine only (or pass --docker-fingerprint)")
        return None
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    command = ["docker", "compose", "run", "--rm", "-v", f"{folder}:/fingerprints"]
    command += ["check", "--label", "docker", "--out", "/fingerprints/docker.json"]
    if subprocess.run(command, cwd=project_root).returncode != 0:
        raise SystemExit(
            f"{COMMAND}: `docker compose run check` failed; fix it, or pass --no-docker to leave Docker out"
        )
    return folder / "docker.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--gpu", default=None, help="Modal GPU type (default: the settings' modal_gpu)")
    parser.add_argument("--outputs", default="outputs", help="folder for the fingerprints (under fingerprints/)")
    docker = parser.add_mutually_exclusive_group()
    docker.add_argument(
        "--docker-fingerprint", metavar="JSON", help="use this Docker fingerprint instead of making one"
    )
    docker.add_argument("--no-docker", action="store_true", help="compare Modal with this machine only")
    args = parser.parse_args(argv)
    if not login.credentials_source():
        print(login.no_credentials_message(COMMAND), file=sys.stderr)
        return 1

    from tandem.cli import main as tandem
    from tandem.errors import UsageError

    from . import functions
    from .launch import fingerprint_of, modal_session

    folder = Path(args.outputs) / "fingerprints"
    try:
        place = resources.placement(
            args.gpu or functions.settings.modal_gpu, 1, resources.SHORT_TIMEOUT, functions.settings
        )
    except UsageError as exc:
        print(f"{COMMAND}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code
    with modal_session("modal", app_running=False):
        modal_json = fingerprint_of(place, "modal", folder)
    local_json = folder / "local.json"
    if tandem(["check", "--label", "local", "--out", str(local_json)]) != 0:
        return 1
    if args.no_docker:
        docker_json = None
    else:
        docker_json = (
            Path(args.docker_fingerprint)
            if args.docker_fingerprint
            else docker_fingerprint(folder, functions.project.root)
        )
    paths = [local_json, *([docker_json] if docker_json else []), modal_json]
    return tandem(["check", "--compare", *map(str, paths)])


if __name__ == "__main__":
    sys.exit(main())
