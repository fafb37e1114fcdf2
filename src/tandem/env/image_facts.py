"""Read a Dockerfile with BuildKit's parser into the facts that decide what an image holds.

Both sides of `tandem parity` go through here: docker/Dockerfile as written, and the Dockerfile that the
Modal client would send to Modal's builder. One reader means the two are compared on equal terms.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tandem.env.lockfile import file_sha256
from tandem.errors import UsageError

try:
    import dockerfile
except ModuleNotFoundError:  # the lock leaves it out where PyPI has no wheel of it (Linux arm64)
    raise UsageError(
        "tandem parity reads Dockerfiles with the `dockerfile` package, which is not installed here: "
        "install it with `uv pip install dockerfile` (builds from source; needs Go)"
    ) from None

# Variables the Docker layout needs for its venv; the Modal image installs into its system Python instead.
LAYOUT_ENV = ("VIRTUAL_ENV", "PATH")


@dataclass
class ImageFacts:
    base_image: str = ""
    python: str = ""
    uv_version: str = ""
    apt_packages: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    lock_sha256: list[str] = field(default_factory=list)  # requirement files installed, by content
    extra_installs: list[str] = field(default_factory=list)  # packages installed outside the lock
    workdir: str = "/"
    source_dir: str = ""  # where the project's src/ lands
    source_after_deps: bool = False


@dataclass
class _Stage:
    image: str
    alias: str
    commands: list = field(default_factory=list)


def describe(text: str, resolve: Callable[[str], Path | None], source_dir: Path) -> ImageFacts:
    """Facts of the image built from the last stage of `text`.

    `resolve` maps a COPY source (a build-context name) to the local file or folder it stands for;
    `source_dir` is the project's src/ folder, to recognise where the source goes.
    """
    stages = _stages(dockerfile.parse_string(text))
    final = stages[-1]
    by_alias = {s.alias: s for s in stages if s.alias}
    facts = ImageFacts(base_image=final.image)
    if m := re.match(r"(?:.*/)?python:(\d+\.\d+)", final.image):
        facts.python = m.group(1)

    reachable = _reachable(final, by_alias)
    copied_files: dict[str, Path] = {}  # path inside the image -> local file it came from
    deps_at = None
    for stage in reachable:
        workdir = "/"
        for index, cmd in enumerate(stage.commands):
            if cmd.cmd == "WORKDIR":
                workdir = posixpath.normpath(posixpath.join(workdir, cmd.value[0]))
                if stage is final:
                    facts.workdir = workdir
            elif cmd.cmd == "COPY":
                source_from = _flag(cmd, "from")
                *sources, dest = cmd.value
                dest = posixpath.normpath(posixpath.join(workdir, dest)) + ("/" if dest.endswith("/") else "")
                if source_from is not None:
                    origin = by_alias[source_from].image if source_from in by_alias else source_from
                    if any(posixpath.basename(s) == "uv" for s in sources):
                        facts.uv_version = origin.rsplit(":", 1)[-1]
                    if stage is final and source_from in by_alias and _installs(by_alias[source_from]):
                        deps_at = index
                    continue
                for src in sources:
                    local = resolve(src)
                    target = dest if not dest.endswith("/") else posixpath.join(dest, posixpath.basename(src))
                    if local is not None and local.resolve() == source_dir.resolve() and stage is final:
                        facts.source_dir = target.rstrip("/")
                        facts.source_after_deps = deps_at is not None and index > deps_at
                    elif local is not None and local.is_file():
                        copied_files[target] = local
            elif cmd.cmd == "RUN":
                script = " ".join(cmd.value)
                for segment in re.split(r"&&|;|\|\|", script):
                    # A command substitution is one argument whatever it contains.
                    segment = re.sub(r"\$\([^)]*\)", "SUBSTITUTED", segment).strip()
                    words = shlex.split(segment) if segment else []
                    if stage is final and _is_apt_install(words):
                        facts.apt_packages += [w for w in words[words.index("install") + 1 :] if w[0] != "-"]
                    if _is_pip_install(words):
                        files, packages = _pip_args(words)
                        for path in files:
                            local = copied_files.get(posixpath.join(workdir, path))
                            facts.lock_sha256.append(file_sha256(local) if local else f"unknown file {path}")
                        facts.extra_installs += packages
                        if stage is final:
                            deps_at = index
            elif cmd.cmd == "ENV" and stage is final:
                pairs = cmd.value
                for key, value in zip(pairs[::2], pairs[1::2], strict=True):
                    if key not in LAYOUT_ENV:
                        facts.env[key] = _unquote(value)
    return facts


def _stages(commands) -> list[_Stage]:
    args: dict[str, str] = {}
    stages: list[_Stage] = []
    for cmd in commands:
        if cmd.cmd == "ARG" and not stages:
            name, _, default = cmd.value[0].partition("=")
            args[name] = default
        elif cmd.cmd == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), cmd.value[0])
            alias = cmd.value[2] if len(cmd.value) > 2 and cmd.value[1].upper() == "AS" else ""
            stages.append(_Stage(image=image, alias=alias))
        elif stages:
            stages[-1].commands.append(cmd)
    if not stages:
        raise ValueError("no FROM instruction")
    return stages


def _reachable(final: _Stage, by_alias: dict[str, _Stage]) -> list[_Stage]:
    """The final stage and every stage it copies from, dependencies first."""
    order: list[_Stage] = []

    def visit(stage: _Stage) -> None:
        if stage in order:
            return
        for cmd in stage.commands:
            if cmd.cmd == "COPY" and (alias := _flag(cmd, "from")) in by_alias:
                visit(by_alias[alias])
        order.append(stage)

    visit(final)
    return order


def _installs(stage: _Stage) -> bool:
    return any(cmd.cmd == "RUN" and re.search(r"\bpip install\b", " ".join(cmd.value)) for cmd in stage.commands)


def _flag(cmd, name: str) -> str | None:
    for flag in cmd.flags:
        if flag.startswith(f"--{name}="):
            return flag.split("=", 1)[1]
    return None


def _is_apt_install(words: list[str]) -> bool:
    return len(words) > 1 and posixpath.basename(words[0]) in ("apt-get", "apt") and "install" in words


def _is_pip_install(words: list[str]) -> bool:
    return "pip" in [posixpath.basename(w) for w in words] and "install" in words


def _pip_args(words: list[str]) -> tuple[list[str], list[str]]:
    files, packages = [], []
    rest = words[words.index("install") + 1 :]
    takes_value = {"--python", "-p", "--index-url", "--extra-index-url", "-c", "--constraint", "--target"}
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in ("-r", "--requirements", "--requirement"):
            files.append(rest[i + 1])
            i += 2
            continue
        if word.startswith(("--requirements=", "--requirement=")):
            files.append(word.split("=", 1)[1])
        elif word in takes_value:
            i += 1
        elif not word.startswith("-"):
            packages.append(word)
        i += 1
    return files, packages


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if value.startswith("'"):
        return shlex.split(value)[0]
    return value
