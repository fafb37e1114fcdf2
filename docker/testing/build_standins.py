"""Build local stand-ins for the Dockerfile's base images, for machines that reach no container registry.

- tandem-local/python:<python>-<suite>: a Debian rootfs from debootstrap (the suite is the one in
  `base_image`), with python, python3, venv and ca-certificates, imported as an image.
- tandem-local/uv:<uv_version>: FROM scratch with /uv and /uvx from the uv wheel of that version.

Existing images are kept. Prints the build args to pass (`PYTHON_IMAGE=...`, `UV_IMAGE=...`), or with
--env the variables compose.yaml reads (`TANDEM_PYTHON_IMAGE=...`, `TANDEM_UV_IMAGE=...`).
Stdlib only: it runs with the host's python3 before any project environment exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PREFIX = "tandem-local"
INCLUDE = "python3,python3-venv,python-is-python3,ca-certificates"


@dataclass(frozen=True)
class Settings:
    python: str  # "3.11"
    suite: str  # "bookworm", from base_image "python:3.11-slim-bookworm"
    uv_version: str

    @property
    def python_image(self) -> str:
        return f"{PREFIX}/python:{self.python}-{self.suite}"

    @property
    def uv_image(self) -> str:
        return f"{PREFIX}/uv:{self.uv_version}"


def read_settings(pyproject: Path = REPO / "pyproject.toml") -> Settings:
    image = tomllib.loads(pyproject.read_text())["tool"]["tandem"]["image"]
    tag = image["base_image"].split("@")[0].rsplit(":", 1)[-1]
    return Settings(python=image["python"], suite=tag.rsplit("-", 1)[-1], uv_version=image["uv_version"])


def log(msg: str) -> None:
    print(f"build-standins: {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def host_apt_uris() -> list[str]:
    """Debian URIs of the host's apt sources, one-line and deb822 styles alike, in order."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    uris: list[str] = []
    for f in files:
        if not f.is_file() or f.suffix not in {".list", ".sources", ""}:
            continue
        for line in f.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["URIs:"]:
                uris += words[1:]
            elif words[:1] == ["deb"]:
                uris += [w for w in words[1:] if "://" in w][:1]
    return [u.rstrip("/") for u in uris]


def mirrors() -> tuple[str, str | None]:
    """The Debian and Debian-security mirrors the host itself uses (override: DEBIAN_MIRROR)."""
    uris = host_apt_uris()
    main = os.environ.get("DEBIAN_MIRROR") or next((u for u in uris if u.endswith("/debian")), None)
    if not main:
        sys.exit("build-standins: no Debian mirror in the host's apt sources; set DEBIAN_MIRROR")
    security = os.environ.get("DEBIAN_SECURITY_MIRROR") or next(
        (u for u in uris if u.endswith("/debian-security")), None
    )
    return main.rstrip("/"), security


def debian_sources(suite: str, main: str, security: str | None) -> str:
    """deb822 sources laid out like the official python image's (main, -updates, -security)."""
    key = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    text = f"Types: deb\nURIs: {main}\nSuites: {suite} {suite}-updates\nComponents: main\n{key}"
    if security:
        text += f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n{key}"
    return text


def build_python(settings: Settings) -> None:
    main, security = mirrors()
    log(f"debootstrap {settings.suite} from {main} -> {settings.python_image}")
    with tempfile.TemporaryDirectory(prefix="tandem-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={INCLUDE}",
            settings.suite,
            str(root),
            main,
            stdout=subprocess.DEVNULL,
        )
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(debian_sources(settings.suite, main, security))
        # The official image's interpreter is not pip-protected and lives in /usr/local/bin.
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for name in ("python", "python3", f"python{settings.python}"):
            link = root / "usr/local/bin" / name
            if not link.exists():
                link.symlink_to(f"/usr/bin/python{settings.python}")
        # Slim like the original: no downloaded .debs or package lists.
        run("sh", "-c", f"rm -rf {root}/var/cache/apt/archives/*.deb {root}/var/lib/apt/lists/*")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run(
            "docker",
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            "-",
            settings.python_image,
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            sys.exit("build-standins: tar of the rootfs failed")
    check_python(settings)


def check_python(settings: Settings) -> None:
    out = run(
        "docker",
        "run",
        "--rm",
        settings.python_image,
        "python",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
        capture_output=True,
        text=True,
    )
    got = out.stdout.strip()
    if got != settings.python:
        sys.exit(f"build-standins: {settings.suite} ships Python {got}, settings want {settings.python}")


def pip_command(scratch: Path) -> list[str]:
    """This interpreter's pip, or a throwaway venv's where it has none (uv-made venvs, as under tox)."""
    if importlib.util.find_spec("pip"):
        return [sys.executable, "-m", "pip"]
    venv = scratch / "pip-venv"
    run(sys.executable, "-m", "venv", str(venv))
    return [str(venv / "bin" / "python"), "-m", "pip"]


def build_uv(settings: Settings) -> None:
    log(f"uv wheel {settings.uv_version} -> {settings.uv_image}")
    with tempfile.TemporaryDirectory(prefix="tandem-uv-") as tmp:
        run(
            *pip_command(Path(tmp)),
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            # The musl wheels carry static binaries, which run in a FROM scratch image.
            *(f"--platform=musllinux_1_{minor}_{platform.machine()}" for minor in (2, 1)),
            "--dest",
            tmp,
            f"uv=={settings.uv_version}",
        )
        wheel = next(Path(tmp).glob("uv-*.whl"))
        layer = Path(tmp) / "uv.tar"
        with zipfile.ZipFile(wheel) as zf, tarfile.open(layer, "w") as tf:
            for name in ("uv", "uvx"):
                data = zf.read(f"uv-{settings.uv_version}.data/scripts/{name}")
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                tf.addfile(info, io.BytesIO(data))
        # Same layout as the published uv image: static binaries at the root, uv as entrypoint.
        run(
            "docker",
            "import",
            "--change",
            'ENTRYPOINT ["/uv"]',
            str(layer),
            settings.uv_image,
            stdout=subprocess.DEVNULL,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", action="store_true", help="print TANDEM_*_IMAGE variables for compose")
    parser.add_argument("--rebuild", action="store_true", help="rebuild images that already exist")
    args = parser.parse_args(argv)
    settings = read_settings()
    if args.rebuild or not image_exists(settings.python_image):
        build_python(settings)
    if args.rebuild or not image_exists(settings.uv_image):
        build_uv(settings)
    prefix = "TANDEM_" if args.env else ""
    print(f"{prefix}PYTHON_IMAGE={settings.python_image}")
    print(f"{prefix}UV_IMAGE={settings.uv_image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
