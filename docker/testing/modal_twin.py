"""The Modal image as a local Docker build: the Dockerfile Modal's builder would run, built with BuildKit.

`tandem.env.parity.modal_dockerfile` gives the commands Modal's builder runs and the files they name. This
lays them out as a build context and changes only what a machine without a registry or Modal needs:

- the two external images (the FROM line and the uv `COPY --from=` source) become the local stand-ins;
- the install RUN gets the proxy's CA bundle as the `ca_bundle` BuildKit secret, exported as SSL_CERT_FILE
  for that RUN only, and the uv download cache the Docker build uses. Both are transport: they decide how
  wheels reach the builder, not which ones (uv checks each against the lock's hashes either way), and
  neither leaves anything in a layer. Modal's builder reaches the index directly and needs neither.

The source that Modal mounts when a container starts is copied in last, as the COPY lines already say.

    python docker/testing/modal_twin.py DEST [--python-image REF] [--uv-image REF]
    docker/testing/docker-buildkit.sh build --secret id=ca_bundle,src=CA.pem -t tandem-modal-twin DEST
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tandem.env.dockerfile import UV_IMAGE
from tandem.env.modal_layers import modal_layers
from tandem.env.parity import load_app_functions, modal_dockerfile
from tandem.env.settings import Project, load_project

INSTALL_MARK = "/.uv/uv pip install"
TRANSPORT = (
    "--mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/uv "
    "if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi && "
)


def twin_dockerfile(text: str, project: Project, python_image: str, uv_image: str) -> str:
    """Modal's Dockerfile with the three lines above changed; fails if any is not there exactly once."""
    uv_ref = f"{UV_IMAGE}:{project.settings.uv_version}"
    edits = {
        "FROM": (lambda line: line == f"FROM {project.settings.base_ref}", lambda line: f"FROM {python_image}"),
        "uv": (
            lambda line: line.startswith(f"COPY --from={uv_ref} "),
            lambda line: line.replace(f"--from={uv_ref} ", f"--from={uv_image} ", 1),
        ),
        "install": (
            lambda line: line.startswith(f"RUN {INSTALL_MARK} "),
            lambda line: "RUN " + TRANSPORT + line[len("RUN ") :],
        ),
    }
    lines = text.splitlines()
    for name, (matches, change) in edits.items():
        hits = [i for i, line in enumerate(lines) if matches(line)]
        if len(hits) != 1:
            raise RuntimeError(f"modal twin: expected one {name} line in Modal's Dockerfile, found {len(hits)}")
        lines[hits[0]] = change(lines[hits[0]])
    return "\n".join(lines) + "\n"


def write_context(dest: Path, python_image: str, uv_image: str, project: Project | None = None) -> Path:
    """Writes DEST/Dockerfile and the files Modal's Dockerfile names, under their names; returns DEST."""
    project = project or load_project()
    image = load_app_functions(project)[0].image  # what `modal run modal_app/train.py` would send
    twin = modal_dockerfile(modal_layers(image, project.settings.modal_builder_version))
    dest.mkdir(parents=True, exist_ok=True)
    for name, local in twin.context.items():
        local = local if local.is_absolute() else project.root / local
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)  # the mounted source comes file by file, as Modal's mount lists it
    (dest / "Dockerfile").write_text(twin_dockerfile(twin.text, project, python_image, uv_image))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="an empty folder for the build context")
    parser.add_argument("--python-image", help="default: the python stand-in (build-standins.sh)")
    parser.add_argument("--uv-image", help="default: the uv stand-in")
    args = parser.parse_args(argv)
    import build_standins  # beside this file, on sys.path when run as a script

    standins = build_standins.read_settings()
    args.python_image = args.python_image or standins.python_image
    args.uv_image = args.uv_image or standins.uv_image
    print(write_context(args.dest, args.python_image, args.uv_image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
