"""The `[tool.tandem.image]` settings block: the one place an image is described."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tandem.errors import UsageError

PYPROJECT = "pyproject.toml"
LOCK = "requirements-modal.txt"
SECTION = "[tool.tandem.image]"

# Env keys that look like credentials: they belong in Modal Secrets / Compose secrets, never in an image.
# A key is read as words (split on "_"): a credential word anywhere (AWS_ACCESS_KEY_ID, API_KEY_FILE), or a
# word holding a credential (PGPASSWORD, MYAPIKEY), as the usual conventions spell them.
SECRET_WORDS = frozenset(
    {
        *("TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASS", "PWD", "PASSPHRASE"),
        *("CREDENTIAL", "CREDENTIALS", "CRED", "CREDS", "KEY", "KEYS", "APIKEY", "PAT", "AUTH", "COOKIE"),
        *("PRIVATE", "JWT", "BEARER"),
    }
)
SECRET_PARTS = ("PASSWORD", "PASSWD", "SECRET", "CREDENTIAL", "APIKEY", "ACCESSKEY", "PRIVATEKEY", "AUTHTOKEN")
NOT_SECRETS = frozenset({"PWD", "OLDPWD"})  # the shell's working directories


def looks_like_secret(key: str) -> bool:
    upper = key.upper()
    if upper in NOT_SECRETS:
        return False
    words = [w for w in re.split(r"[_\W]+", upper) if w]
    return any(w in SECRET_WORDS or w.endswith("TOKEN") for w in words) or any(p in upper for p in SECRET_PARTS)


_FIELDS = {
    "python": str,
    "base_image": str,
    "base_image_digest": str,
    "uv_version": str,
    "apt_packages": list,
    "workdir": str,
    "data_dir": str,
    "runs_dir": str,
    "modal_gpu": str,
    "modal_builder_version": str,
    "modal_cpu": (int, float),
    "modal_memory": int,
    "threads": int,
    "env": dict,
    "modal_secrets": list,
}
_OPTIONAL = {
    "base_image_digest": "",
    "apt_packages": [],
    "env": {},
    "modal_secrets": [],
    "modal_cpu": 4.0,
    "modal_memory": 16384,
    "threads": 4,
}
# The characters each text setting may hold (docs/parity.md lists them, with where each value lands).
# Every value reaches docker/Dockerfile, compose.yaml, docker/image.env or the Modal image; none may hold
# what reads as syntax in any of them: a line break or NUL ends an instruction or a line everywhere, and
# shell, Dockerfile and Compose each give meaning to quotes, backslashes, `$`, braces and spaces.
PATH_CHARS = r"(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)+"
FIELD_CHARS = {
    "python": (r"3\.[0-9]{1,3}", "a minor version such as '3.11'"),
    "base_image": (
        r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}",
        "an image reference (letters, digits, '.', '_', '/', ':', '-') without a digest "
        "(put the digest in base_image_digest)",
    ),
    "base_image_digest": (r"(?:sha256:[0-9a-f]{64})?", "empty or 'sha256:<64 hex digits>'"),
    "uv_version": (r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", "a version like '0.9.5'"),
    "apt_packages": (r"[a-z0-9][a-z0-9+.-]{0,127}", "Debian package names (a-z, 0-9, '+', '.', '-')"),
    "workdir": (PATH_CHARS, "an absolute path inside the image (folders of letters, digits, '.', '_', '-')"),
    "data_dir": (PATH_CHARS, "an absolute path inside the image (folders of letters, digits, '.', '_', '-')"),
    "runs_dir": (PATH_CHARS, "an absolute path inside the image (folders of letters, digits, '.', '_', '-')"),
    "modal_gpu": (r"[A-Za-z0-9][A-Za-z0-9!+-]{0,31}", "a Modal GPU type such as 'H100'"),
    "modal_builder_version": (
        r"[0-9]{4}\.[0-9]{2}",
        "a Modal image builder version such as '2026.10' (see `modal.Image` docs)",
    ),
    "modal_secrets": (r"[A-Za-z0-9_.-]{1,64}", "Modal Secret names (letters, digits, '-', '_', '.')"),
}
ENV_KEY_CHARS = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
# Printable ASCII but for backslash and braces (docker/image.env is read by tox, which takes `\` and
# `{...}` as its own syntax and strips spaces at either end); quotes, `$` and the rest stay literal.
ENV_VALUE_CHARS = r"(?:[!-\[\]-z|~](?:[ -\[\]-z|~]{0,4094}[!-\[\]-z|~])?)?"

# Set from `threads` in every image and in local runs, so CPU kernels use the same thread count everywhere
# (Modal would otherwise derive them from its CPU reservation; torch reads OMP_ and MKL_, numpy OPENBLAS_).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ImageSettings:
    python: str
    base_image: str
    uv_version: str
    workdir: str
    data_dir: str
    runs_dir: str
    modal_gpu: str
    modal_builder_version: str
    modal_cpu: float = 4.0  # CPU cores reserved for each Modal container
    modal_memory: int = 16384  # MiB of memory reserved for each Modal container
    threads: int = 4  # CPU threads of each process, on every target (THREAD_VARS)
    base_image_digest: str = ""
    apt_packages: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    # The Modal Secrets (by name) the app's Functions use; their values never reach an image. `tandem parity`
    # fails on a Secret a Function uses that is not listed here, and on one listed that no Function uses.
    modal_secrets: tuple[str, ...] = ()

    @property
    def runtime_env(self) -> dict[str, str]:
        """The environment every target sets from the settings: the env block, then the thread variables."""
        return {**self.env, **dict.fromkeys(THREAD_VARS, str(self.threads))}

    @property
    def base_ref(self) -> str:
        """The base image as both targets pull it: pinned by digest when one is given."""
        return f"{self.base_image}@{self.base_image_digest}" if self.base_image_digest else self.base_image

    def as_dict(self) -> dict:
        """What the images are made from (the environment digest hashes it); modal_secrets is not."""
        return {
            "python": self.python,
            "base_image": self.base_image,
            "base_image_digest": self.base_image_digest,
            "uv_version": self.uv_version,
            "apt_packages": list(self.apt_packages),
            "workdir": self.workdir,
            "data_dir": self.data_dir,
            "runs_dir": self.runs_dir,
            "modal_gpu": self.modal_gpu,
            "modal_builder_version": self.modal_builder_version,
            "modal_cpu": self.modal_cpu,
            "modal_memory": self.modal_memory,
            "threads": self.threads,
            "env": dict(self.env),
        }


@dataclass(frozen=True)
class Project:
    """A tandem project on disk: its root, its settings and where its lock and generated files live."""

    root: Path
    settings: ImageSettings

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    @property
    def pyproject_path(self) -> Path:
        return self.root / PYPROJECT

    @property
    def dockerfile_path(self) -> Path:
        return self.root / "docker" / "Dockerfile"


def default_root(start: Path | None = None) -> Path:
    """The project a command works on when no --project is given: `TANDEM_PROJECT_DIR` (the images set it),
    else the nearest directory at or above `start` (the current one) whose pyproject.toml has a
    [tool.tandem.image] table, the way uv, ruff and pytest find theirs."""
    if env := os.environ.get("TANDEM_PROJECT_DIR"):
        if not (Path(env) / PYPROJECT).is_file():
            raise UsageError(f"TANDEM_PROJECT_DIR={env} holds no {PYPROJECT}; point it at a tandem project or unset it")
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if _declares_settings(directory / PYPROJECT):
            return directory
    raise UsageError(
        f"no tandem project in {here} or above (no {PYPROJECT} with a {SECTION} table); "
        "cd into the project or pass --project DIR"
    )


def _declares_settings(pyproject: Path) -> bool:
    if not pyproject.is_file():
        return False
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{pyproject}: not valid TOML ({exc}); fix the syntax") from None
    return isinstance(data.get("tool", {}).get("tandem", {}).get("image"), dict)


def load_project(root: str | Path | None = None) -> Project:
    root = Path(root) if root is not None else default_root()
    return Project(root=root, settings=load_settings(root / PYPROJECT))


def load_settings(pyproject: Path) -> ImageSettings:
    if not pyproject.is_file():
        raise UsageError(f"{pyproject} not found: run from a tandem project or pass --project DIR")
    try:
        data = tomllib.loads(pyproject.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{pyproject}: not valid TOML ({exc}); fix the syntax") from None
    block, path = data, []
    for name in ("tool", "tandem", "image"):
        block = block.get(name)
        path.append(name)
        if block is None:
            raise UsageError(f"{pyproject} has no {SECTION} table; add one (see README, 'Settings')")
        if not isinstance(block, dict):
            raise UsageError(
                f"{pyproject}: {'.'.join(path)} is {block!r}, not a table; it must hold the {SECTION} table"
            )
    return parse_settings(block, source=f"{pyproject} {SECTION}")


def parse_settings(block: dict, *, source: str = SECTION) -> ImageSettings:
    unknown = sorted(set(block) - set(_FIELDS))
    if unknown:
        raise UsageError(f"{source}: unknown key {unknown[0]!r}; valid keys are {', '.join(_FIELDS)}")
    missing = [k for k in _FIELDS if k not in block and k not in _OPTIONAL]
    if missing:
        raise UsageError(f"{source}: missing key {missing[0]!r}; add it")
    values = {k: block.get(k, _OPTIONAL.get(k)) for k in _FIELDS}
    for key, kind in _FIELDS.items():
        if not isinstance(values[key], kind) or isinstance(values[key], bool):
            name = "number" if isinstance(kind, tuple) else kind.__name__
            raise UsageError(f"{source}: {key} must be a {name}, got {values[key]!r}")

    for key, (chars, expected) in FIELD_CHARS.items():
        for value in values[key] if isinstance(values[key], list) else [values[key]]:
            if not (isinstance(value, str) and re.fullmatch(chars, value)):
                raise UsageError(f"{source}: {key} must be {expected}; got {value!r}")
    tag = python_of_image(values["base_image"])
    if tag and tag != values["python"]:
        raise UsageError(
            f"{source}: base_image {values['base_image']!r} is Python {tag} but python is "
            f"{values['python']!r}; make them agree"
        )
    _check(0 < values["modal_cpu"] < math.inf, source, "modal_cpu", "a positive number of CPU cores, e.g. 4.0")
    _check(values["modal_memory"] > 0, source, "modal_memory", "a positive number of MiB, e.g. 16384")
    _check(values["threads"] >= 1, source, "threads", "a positive number of threads, e.g. 4")
    if values["threads"] > values["modal_cpu"]:
        raise UsageError(
            f"{source}: threads {values['threads']} is above modal_cpu {values['modal_cpu']}: more threads than "
            "reserved cores only contend; lower threads or raise modal_cpu"
        )
    secrets = values["modal_secrets"]
    for name in {n for n in secrets if secrets.count(n) > 1}:
        raise UsageError(f"{source}: modal_secrets names {name!r} twice; list each Secret once")
    env = values["env"]
    for key in set(env) & set(THREAD_VARS):
        raise UsageError(f"{source}: env.{key} is set from threads; remove it and set threads = N instead")
    for key, value in env.items():
        if not re.fullmatch(ENV_KEY_CHARS, key):
            raise UsageError(f"{source}: env key {key!r} must be a variable name (letters, digits, '_')")
        if not isinstance(value, str):
            raise UsageError(f'{source}: env.{key} must be a string; quote it: {key} = "{value}"')
        if not re.fullmatch(ENV_VALUE_CHARS, value):
            raise UsageError(
                f"{source}: env.{key} must be one line of printable ASCII with no backslash or brace and no "
                f"space at either end; got {value!r}"
            )
        if looks_like_secret(key):
            raise UsageError(
                f"{source}: env.{key} looks like a secret; never bake secrets into an image: "
                "use a Modal Secret (modal.Secret.from_name) or a Compose secret instead"
            )
    return ImageSettings(
        python=values["python"],
        base_image=values["base_image"],
        base_image_digest=values["base_image_digest"],
        uv_version=values["uv_version"],
        apt_packages=tuple(values["apt_packages"]),
        workdir=values["workdir"],
        data_dir=values["data_dir"],
        runs_dir=values["runs_dir"],
        modal_gpu=values["modal_gpu"],
        modal_builder_version=values["modal_builder_version"],
        modal_cpu=float(values["modal_cpu"]),
        modal_memory=values["modal_memory"],
        threads=values["threads"],
        env=dict(env),
        modal_secrets=tuple(secrets),
    )


def python_of_image(ref: str) -> str:
    """The Python minor an official python image's tag names ("python:3.11-slim" -> "3.11"), else ""."""
    tag = re.match(r"(?:.*/)?python:(\d+\.\d+)", ref)
    return tag.group(1) if tag else ""


def _check(ok, source: str, key: str, expected: str) -> None:
    if not ok:
        raise UsageError(f"{source}: {key} must be {expected}")
