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
from tandem.env.settings import python_of_image
from tandem.errors import UsageError

try:
    import dockerfile
except ModuleNotFoundError:  # the lock leaves it out where PyPI has no wheel of it (Linux arm64)
    raise UsageError(
        "tandem parity reads Dockerfiles with the `dockerfile` package, which is not installed here: "
        "install it with `uv pip install dockerfile` (builds from source; needs Go)"
    ) from None

# RUN commands that only keep apt's cache out of a layer or make the venv the install goes into; every
# other RUN is reported, so a command added on one side shows.
HOUSEKEEPING = (["apt-get", "update"], ["rm", "-rf", "/var/lib/apt/lists/*"])


@dataclass
class ImageFacts:
    base_image: str = ""  # the FROM reference without its digest
    base_digest: str = ""  # the digest it is pinned to (`name@sha256:...`), or "" when it floats on the tag
    python: str = ""
    uv_version: str = ""
    apt_packages: list[str] = field(default_factory=list)
    apt_options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    lock_sha256: list[str] = field(default_factory=list)  # requirement files installed, by content
    extra_installs: list[str] = field(default_factory=list)  # packages installed outside the lock
    install_options: list[str] = field(default_factory=list)  # every option but --python and -r
    install_python: str = ""  # the interpreter the lock is installed for
    install_env: dict[str, str] = field(default_factory=dict)  # ENV in effect where the install runs
    other_commands: list[str] = field(default_factory=list)  # RUNs that are none of the above
    user: str = "root"
    home: str = "/root"
    workdir: str = "/"
    source_dir: str = ""  # where the project's src/ lands
    source_after_deps: bool = False
    # path in the image -> local file or folder, for every COPY from the build context into the final image
    # (the requirement files an install reads are left out: they are compared by content, as the lock)
    shipped: dict[str, Path] = field(default_factory=dict)
    add_python: str = ""  # a standalone Python added over the base image's (Modal's add_python=)


@dataclass
class _Stage:
    image: str
    alias: str
    commands: list = field(default_factory=list)


def describe(
    text: str, resolve: Callable[[str], Path | None], source_dir: Path, name: str = "the Dockerfile"
) -> ImageFacts:
    """Facts of the image built from the last stage of `text`.

    `resolve` maps a COPY source (a build-context name) to the local file or folder it stands for;
    `source_dir` is the project's src/ folder, to recognise where the source goes. A Dockerfile that
    cannot be read is a UsageError naming `name` and the line.
    """
    stages = _stages(_parse(text, name), name)
    final = stages[-1]
    by_alias = {s.alias: s for s in stages if s.alias}
    image, _, digest = final.image.partition("@")
    facts = ImageFacts(base_image=image, base_digest=digest)
    facts.python = python_of_image(final.image)

    reachable = _reachable(final, by_alias)
    copied_files: dict[str, Path] = {}  # path inside the image -> local file it came from
    deps_at = None
    homes: dict[str, str] = {"root": "/root"}
    for stage in reachable:
        workdir = "/"
        stage_env: dict[str, str] = {}
        for index, cmd in enumerate(stage.commands):
            try:
                if cmd.cmd == "WORKDIR":
                    workdir = posixpath.normpath(posixpath.join(workdir, cmd.value[0]))
                    if stage is final:
                        facts.workdir = workdir
                elif cmd.cmd == "COPY":
                    source_from = _flag(cmd, "from")
                    sources, dest = cmd.value[:-1], cmd.value[-1]
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
                        if local is not None and stage is final and local.exists():
                            facts.shipped[target.rstrip("/")] = local
                        if local is not None and local.resolve() == source_dir.resolve() and stage is final:
                            if not local.is_dir():
                                continue  # not there to copy: reported as missing, as on the Modal side
                            facts.source_dir = target.rstrip("/")
                            facts.source_after_deps = deps_at is not None and index > deps_at
                        elif local is not None and local.is_file():
                            copied_files[target] = local
                elif cmd.cmd == "RUN":
                    script = " ".join(cmd.value)
                    for segment in re.split(r"&&|;|\|\|", script):
                        words = _split(segment)
                        if not words or words in HOUSEKEEPING or _is_ca_export(words):
                            continue
                        if _is_apt_install(words):
                            rest = words[words.index("install") + 1 :]
                            facts.apt_packages += [w for w in rest if w[0] != "-"]
                            facts.apt_options += [w for w in rest if w[0] == "-"]
                        elif _is_pip_install(words):
                            files, packages, options, python = _pip_args(words)
                            for path in files:
                                local = copied_files.get(posixpath.join(workdir, path))
                                facts.shipped.pop(posixpath.join(workdir, path), None)
                                facts.lock_sha256.append(file_sha256(local) if local else f"unknown file {path}")
                            facts.extra_installs += packages
                            if files:  # the lock's install; any other is reported as an install outside it
                                facts.install_options += options
                                facts.install_python = python
                                facts.install_env.update(stage_env)
                            if stage is final:
                                deps_at = index
                        elif words[0] == "useradd" and "--create-home" in words:
                            homes[words[-1]] = f"/home/{words[-1]}"
                        elif not _makes_venv(words):
                            facts.other_commands.append(shlex.join(words))
                elif cmd.cmd == "ENV":
                    pairs = cmd.value
                    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
                        stage_env[key] = _word(value)
                        if stage is final:
                            facts.env[key] = stage_env[key]
                elif cmd.cmd == "USER" and stage is final:
                    facts.user = cmd.value[0]
            except (ValueError, IndexError, KeyError, OSError) as exc:  # edited past what a build accepts
                raise _unreadable(name, cmd, exc) from None
    facts.home = homes.get(facts.user, "(no home)")
    return facts


def _parse(text: str, name: str) -> tuple:
    """BuildKit's parse of `text`; what it refuses is named with the first line it cannot get past."""
    try:
        return dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        if str(exc) == "file with no instructions":
            raise UsageError(f"{name} holds no instructions; run `tandem render` to generate it") from None
        lines = text.split("\n")
        line = next((n for n in range(1, len(lines) + 1) if _refused("\n".join(lines[:n]))), len(lines))
        raise UsageError(f"{name} line {line}: {exc}; fix the line, or run `tandem render` to generate it") from None


def _refused(text: str) -> bool:
    try:
        dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        return str(exc) != "file with no instructions"
    return False


def _stages(commands, name: str) -> list[_Stage]:
    args: dict[str, str] = {}
    stages: list[_Stage] = []
    for cmd in commands:
        try:
            if cmd.cmd == "ARG" and not stages:
                key, _, default = cmd.value[0].partition("=")
                args[key] = _word(default)
            elif cmd.cmd == "FROM":
                image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), cmd.value[0])
                alias = cmd.value[2] if len(cmd.value) > 2 and cmd.value[1].upper() == "AS" else ""
                stages.append(_Stage(image=image, alias=alias))
            elif stages:
                stages[-1].commands.append(cmd)
        except (ValueError, IndexError) as exc:
            raise _unreadable(name, cmd, exc) from None
    if not stages:
        raise UsageError(f"{name} has no FROM instruction; run `tandem render` to generate it")
    return stages


def _unreadable(name: str, cmd, exc: Exception) -> UsageError:
    why = {IndexError: "an argument is missing", KeyError: f"no {exc} here"}.get(type(exc), str(exc))
    return UsageError(
        f"{name} line {cmd.start_line}: cannot read this {cmd.cmd} instruction ({why}); "
        "fix the line, or run `tandem render` to generate it"
    )


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


def _split(segment: str) -> list[str]:
    """Shell words; a command substitution stays one word, as written (`$(command -v python)`)."""
    found: list[str] = []
    marked = re.sub(r"\$\([^)]*\)", lambda m: found.append(m.group(0)) or f"\0{len(found) - 1}\0", segment).strip()
    return [re.sub(r"\0(\d+)\0", lambda m: found[int(m.group(1))], w) for w in shlex.split(marked)] if marked else []


def _is_ca_export(words: list[str]) -> bool:
    """The optional CA bundle for the install step: transport only (see docker/Dockerfile's header)."""
    return (
        words[:2] == ["if", "["]
        or words[0] in ("then", "fi")
        or words[:2] == ["export", "SSL_CERT_FILE=/run/secrets/ca_bundle"]
    )


def _makes_venv(words: list[str]) -> bool:
    return posixpath.basename(words[0]) == "uv" and words[1:2] == ["venv"]


# Installer options that take a value (as the next word).
_TAKES_VALUE = {
    "--python", "-p", "--index-url", "-i", "--extra-index-url", "--find-links", "-f", "-c", "--constraint",
    "--target", "--prefix", "--link-mode", "--prerelease", "--index-strategy", "--resolution", "--python-platform",
    "--python-version", "--override", "--exclude-newer", "--config-settings", "-C", "--keyring-provider",
}  # fmt: skip


def _pip_args(words: list[str]) -> tuple[list[str], list[str], list[str], str]:
    """(requirement files, packages, every other option with its value, the --python interpreter)."""
    files, packages, options, python = [], [], [], ""
    rest = words[words.index("install") + 1 :]
    i = 0
    while i < len(rest):
        word = rest[i]
        name, has_value, value = word.partition("=")
        if name in ("-r", "--requirements", "--requirement"):
            files.append(value if has_value else rest[i + 1])
            i += 1 if has_value else 2
            continue
        if name in ("--python", "-p"):
            python = value if has_value else rest[i + 1]
            i += 1 if has_value else 2
            continue
        if word.startswith("-"):
            options.append(word)
            if name in _TAKES_VALUE and not has_value and i + 1 < len(rest):
                options.append(rest[i + 1])
                i += 1
        else:
            packages.append(word)
        i += 1
    return files, packages, options, python


def _word(text: str) -> str:
    """One word as BuildKit reads it in ENV and ARG: '...' literal; "..." with \\, " and $ escaped by a
    backslash; elsewhere a backslash escapes any character. Variables stay as written ($PATH)."""
    out: list[str] = []
    quote, i = "", 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            quote, c = ("", "") if c == "'" else (quote, c)
        elif c == "\\" and i + 1 < len(text) and (not quote or text[i + 1] in '\\"$'):
            i, c = i + 1, text[i + 1]
        elif c in "'\"" and quote in ("", c):
            quote, c = ("" if quote else c), ""
        out.append(c)
        i += 1
    if quote:
        raise ValueError(f"the {quote} quote opened in {text[:40]!r} is never closed")
    return "".join(out)
