"""`tandem parity`: docker/Dockerfile and the Modal app's images, compared field by field.

The Modal side is what `modal run modal_app/train.py` would send: the app is imported the way Modal's CLI
imports it, and every Function's image is read back through Modal's own rendering at the pinned builder
version. Both sides go through one Dockerfile reader. Every difference between the two that is there by
design is listed once, in ACCEPTED, with its reason; any other difference fails.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tandem.env.dockerfile import UID, USER, VENV
from tandem.env.image_facts import ImageFacts, describe
from tandem.env.image_steps import SOURCE_DIR, image_steps
from tandem.env.modal_image import BUILDER_VERSION_VAR
from tandem.env.modal_layers import ModalFunction, ModalLayer, app_functions, builder_versions, modal_layers
from tandem.env.settings import Project
from tandem.errors import UsageError
from tandem.tables import format_table, shorten

APP_FILE = "modal_app/train.py"
# Names that must reach neither image, whatever the ignore list says.
SECRET_LOOKING = (".env*", "*.pem", "*.key", ".netrc", "id_rsa*", "*credentials*")
UNPINNED = "(unpinned)"


def accepted(project: Project) -> dict[str, tuple[str, str, str]]:
    """field -> (Docker's value, Modal's value, why they differ). Only these exact pairs pass."""
    s = project.settings
    return {
        "install interpreter": (
            f"{VENV}/bin/python",
            "$(command -v python)",
            "Docker installs into a venv copied out of its builder stage; Modal into the base image's Python",
        ),
        "env VIRTUAL_ENV": (VENV, "(unset)", "the venv exists only in the Docker image"),
        "env PATH": (f"{VENV}/bin:$PATH", "(unset)", "puts the Docker venv first; Modal's Python is already on PATH"),
        "user": (
            USER,
            "root",
            f"Docker runs as uid {UID} so bind-mounted files stay the host user's; Modal runs as root",
        ),
        "HOME": (f"/home/{USER}", "/root", "follows the user"),
        "other build commands": (
            f"mkdir -p {s.workdir} {s.data_dir} {s.runs_dir}; chown {USER}:{USER} {s.data_dir} {s.runs_dir}",
            "(none)",
            "the data and runs folders belong to the Docker user; on Modal they are Volume mount points",
        ),
    }


@dataclass
class Row:
    field: str
    docker: str
    modal: str
    expected: str | None = None  # parity of two wrong images is no comfort: some fields must hold alone
    reason: str | None = None  # set when this difference is an accepted one
    note: str | None = None  # a match that still deserves a look (an unpinned base)

    @property
    def match(self) -> bool:
        if self.reason is not None:
            return True
        return self.docker == self.modal and self.expected in (None, self.docker)

    @property
    def status(self) -> str:
        if self.reason is not None:
            return f"differs (accepted: {self.reason})"
        if self.match and self.note:
            return f"yes ({self.note})"
        return "yes" if self.match else "NO"


@dataclass
class ModalDockerfile:
    """The Modal image as one Dockerfile plus the build context its COPY lines name."""

    text: str
    context: dict[str, Path]


def modal_dockerfile(layers: list[ModalLayer]) -> ModalDockerfile:
    lines: list[str] = []
    context: dict[str, Path] = {}
    for layer in layers:
        for command in layer.commands:
            if lines and command == "FROM base":
                continue
            if command == "COPY . /" and layer.copied_files:  # add_local_* with copy=True: file by file
                for local, remote in layer.copied_files:
                    context[f"copied{remote}"] = local
                    lines.append(f"COPY copied{remote} {remote}")
                continue
            lines.append(command)
        context.update({name.lstrip("/"): path for name, path in layer.context_files.items()})
        for local, remote in layer.mounted_files:
            name = f"mounts{remote}"
            context[name] = local
            lines.append(f"COPY {name} {remote}")
    return ModalDockerfile(text="\n".join(lines) + "\n", context=context)


def docker_facts(project: Project, text: str | None = None) -> ImageFacts:
    path = project.dockerfile_path
    if text is None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UsageError(f"{path} not found: run `tandem render` to generate it") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not a text file: run `tandem render` to generate it again") from None
        except OSError as exc:
            raise UsageError(f"{path} cannot be read ({exc.strerror}); run `tandem render` to write it") from None
    return describe(text, lambda name: project.root / name, project.root / SOURCE_DIR, name=str(path))


def modal_facts(project: Project, image=None) -> ImageFacts:
    """The facts of one Modal image (default: the one the app's Functions use)."""
    if image is None:
        image = load_app_functions(project)[0].image
    layers = modal_layers(image, project.settings.modal_builder_version)
    twin = modal_dockerfile(layers)
    facts = describe(
        twin.text,
        lambda name: twin.context.get(name.lstrip("/")),
        project.root / SOURCE_DIR,
        name="the Dockerfile Modal's builder gets",
    )
    facts.add_python = ", ".join(layer.add_python for layer in layers if layer.add_python)
    # The source is mounted file by file when a container starts, after every build step.
    source = (project.root / SOURCE_DIR).resolve()
    roots = {
        remote.removesuffix("/" + local.resolve().relative_to(source).as_posix())
        for remote, local in facts.shipped.items()
        if _under(local, source)
    }
    if roots:  # more than one place is a difference too: each is named
        facts.source_dir = ", ".join(sorted(roots))
        facts.source_after_deps = bool(facts.lock_sha256) and not layers[-1].commands
    return facts


@dataclass
class LoadedApp:
    functions: list[ModalFunction]
    builder_version: str | None  # what the app pinned MODAL_IMAGE_BUILDER_VERSION to, if anything


def load_app(project: Project) -> LoadedApp:
    """The app as `modal run modal_app/train.py` imports it, its Functions and the builder version it pins."""
    from modal.cli.import_refs import import_app_from_ref, parse_import_ref

    path = project.root / APP_FILE
    if not path.is_file():
        raise UsageError(f"{path} not found: parity reads the Modal app from there")
    # The app pins the builder version for its own process, and Modal's import registers it as a module
    # and puts its folder on sys.path: all put back, since parity may look at other projects after.
    before = os.environ.pop(BUILDER_VERSION_VAR, None)
    search_path = list(sys.path)
    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if _app_module(name, path)}
    try:
        app = import_app_from_ref(parse_import_ref(str(path)))
        pinned = os.environ.get(BUILDER_VERSION_VAR)
        functions = app_functions(app)  # while the app's package is importable: its mount lists its files
    except Exception as exc:
        if isinstance(exc.__cause__, UsageError):  # the app refused its settings or lock: say why
            raise exc.__cause__ from None
        raise
    finally:
        os.environ.pop(BUILDER_VERSION_VAR, None)
        if before is not None:
            os.environ[BUILDER_VERSION_VAR] = before
        for name in [name for name in sys.modules if _app_module(name, path)]:
            del sys.modules[name]
        sys.modules.update(ours)
        sys.path[:] = search_path
    if not functions:
        raise UsageError(f"{path}: the app registers no Functions")
    return LoadedApp(functions, pinned)


def _app_module(name: str, path: Path) -> bool:
    """The modules importing the app file defines: its own name, and its package's (modal_app.*)."""
    package = path.parent.name
    return name == path.stem or name == package or name.startswith(package + ".")


def load_app_functions(project: Project) -> list[ModalFunction]:
    return load_app(project).functions


def shipped_files(project: Project, facts: ImageFacts) -> dict[str, Path]:
    """Every file the image gets from this machine: path in the image -> local file. A folder copied from
    the build context is read as Docker reads it, after .dockerignore."""
    ignored = _dockerignore(project)
    root = project.root.resolve()
    files: dict[str, Path] = {}
    for remote, local in facts.shipped.items():
        if not local.is_dir():
            files[remote] = local
            continue
        for path in sorted(local.rglob("*")):
            if path.is_file() and not (_under(path, root) and ignored(path.resolve().relative_to(root))):
                files[f"{remote}/{path.relative_to(local).as_posix()}"] = path
    return files


def _dockerignore(project: Project):
    from modal import FilePatternMatcher  # dockerignore semantics

    ignore_file = project.root / ".dockerignore"
    try:
        lines = ignore_file.read_text().splitlines() if ignore_file.is_file() else []
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"{ignore_file} cannot be read as text; run `tandem render` to write it again") from None
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return FilePatternMatcher(*patterns) if patterns else (lambda path: False)


def _source_names(project: Project, files: dict[str, Path]) -> set[str]:
    source = (project.root / SOURCE_DIR).resolve()
    return {
        f"{SOURCE_DIR}/{local.resolve().relative_to(source).as_posix()}"
        for local in files.values()
        if _under(local, source)
    }


def _other_files(project: Project, files: dict[str, Path]) -> set[str]:
    """The files outside src/, as 'path in the image <- local file'."""
    source = (project.root / SOURCE_DIR).resolve()
    return {
        f"{remote} <- {_local_name(project, local)}" for remote, local in files.items() if not _under(local, source)
    }


def _local_name(project: Project, path: Path) -> str:
    root = project.root.resolve()
    return path.resolve().relative_to(root).as_posix() if _under(path, root) else str(path.resolve())


def source_files_docker(project: Project) -> set[str]:
    """src/ files (relative to the project) that docker/Dockerfile copies, after .dockerignore."""
    return _source_names(project, shipped_files(project, docker_facts(project)))


def source_files_modal(project: Project, image) -> set[str]:
    """src/ files (relative to the project) that the Modal image gets, mounted or copied."""
    return _source_names(project, shipped_files(project, modal_facts(project, image)))


def _under(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def compare(docker: ImageFacts, modal: ImageFacts, project: Project) -> list[Row]:
    rows = [
        Row("base image", docker.base_image, modal.base_image),
        _base_digest(docker, modal, project),
        Row("python", docker.python, modal.python),
        Row("add python", docker.add_python or "(none)", modal.add_python or "(none)", expected="(none)"),
        Row("uv version", docker.uv_version, modal.uv_version),
        Row("apt packages", " ".join(docker.apt_packages), " ".join(modal.apt_packages)),
        Row("apt options", " ".join(docker.apt_options), " ".join(modal.apt_options)),
        Row("lock (sha256)", " ".join(docker.lock_sha256) or "(none)", " ".join(modal.lock_sha256) or "(none)"),
        Row(
            "installs outside lock",
            " ".join(docker.extra_installs) or "(none)",
            " ".join(modal.extra_installs) or "(none)",
            expected="(none)",
        ),
        Row("install options", " ".join(docker.install_options), " ".join(modal.install_options)),
        Row("install interpreter", docker.install_python or "(none)", modal.install_python or "(none)"),
        Row("install env", _pairs(docker.install_env), _pairs(modal.install_env), expected="(none)"),
        Row(
            "other build commands",
            "; ".join(docker.other_commands) or "(none)",
            "; ".join(modal.other_commands) or "(none)",
        ),
    ]
    for key in dict.fromkeys([*docker.env, *modal.env]):
        rows.append(Row(f"env {key}", docker.env.get(key, "(unset)"), modal.env.get(key, "(unset)")))
    rows += [
        Row("user", docker.user, modal.user),
        Row("HOME", docker.home, modal.home),
        Row("workdir", docker.workdir, modal.workdir),
        Row("source location", docker.source_dir or "(missing)", modal.source_dir or "(missing)"),
        _source_order(docker, modal),
    ]
    for row in rows:
        docker_value, modal_value, why = accepted(project).get(row.field, (None, None, None))
        if (row.docker, row.modal) == (docker_value, modal_value):
            row.reason = why
    return rows


def _base_digest(docker: ImageFacts, modal: ImageFacts, project: Project) -> Row:
    """Both FROM lines name the digest the settings record; with none recorded the base floats on its tag on
    both sides, which matches but is noted: each build takes whatever the tag names that day."""
    row = Row(
        "base image digest",
        docker.base_digest or UNPINNED,
        modal.base_digest or UNPINNED,
        expected=project.settings.base_image_digest or UNPINNED,
    )
    if row.match and row.docker == UNPINNED:
        tag = project.settings.base_image
        row.note = f"unpinned: both take whatever {tag} names when they build; `tandem pin-base` records a digest"
    return row


def _source_order(docker: ImageFacts, modal: ImageFacts) -> Row:
    if not docker.source_dir and not modal.source_dir:  # a project without src/: nothing to order
        return Row("source after deps", "(no source)", "(no source)")
    return Row("source after deps", str(docker.source_after_deps), str(modal.source_after_deps), expected="True")


def app_rows(project: Project, app: LoadedApp, docker: ImageFacts, modal: ImageFacts) -> list[Row]:
    """What the loaded app adds beyond the image: one image for every Function, no Function-level env, the
    app's source in every Function, the Secrets the settings list, the pinned builder version, and the same
    files from this machine as the Docker build context."""
    rows = []
    functions = app.functions
    version = project.settings.modal_builder_version
    first = _image_key(functions[0].image, version)
    for function in functions:
        same = _image_key(function.image, version) == first
        rows.append(Row(f"function {function.name} image", "the app's image", "the app's image" if same else "other"))
        rows.append(Row(f"function {function.name} env", "(none)", _pairs(function.env), expected="(none)"))
    package = f"/root/{Path(APP_FILE).parent.name}"
    missing = [f for f in functions if f.app_source != [package]]
    rows.append(
        Row(
            "app source mounted",
            f"{package} in every Function",
            "; ".join(f"{f.name}: {', '.join(f.app_source) or '(none)'}" for f in missing)
            or f"{package} in every Function",
        )
    )
    listed = sorted(project.settings.modal_secrets)
    used = sorted({name for f in functions for name in f.secrets})
    rows.append(Row("modal secrets", " ".join(listed) or "(none)", " ".join(used) or "(none)"))
    supported = builder_versions()
    rows.append(
        Row(
            "modal builder version",
            version if version in supported else f"{version} (this client builds {', '.join(supported)})",
            app.builder_version or "(not pinned by the app: the workspace's)",
            expected=version,
        )
    )
    docker_shipped, modal_shipped = shipped_files(project, docker), shipped_files(project, modal)
    docker_files, modal_files = _source_names(project, docker_shipped), _source_names(project, modal_shipped)
    rows.append(Row("source files", _files(docker_files, modal_files), _files(modal_files, docker_files)))
    docker_other, modal_other = _other_files(project, docker_shipped), _other_files(project, modal_shipped)
    rows.append(Row("other files shipped", _files(docker_other, modal_other), _files(modal_other, docker_other)))
    app_files = {local: remote for f in functions for local, remote in f.app_files}
    rows.append(
        Row(
            "secret-looking files shipped",
            _secret_names(project, docker_shipped.items()),
            _secret_names(project, [*modal_shipped.items(), *((remote, local) for local, remote in app_files.items())]),
            expected="(none)",
        )
    )
    return rows


def _image_key(image, version: str) -> tuple:
    layers = modal_layers(image, version)
    return modal_dockerfile(layers).text, [layer.add_python for layer in layers]


def _secret_names(project: Project, files) -> str:
    names = sorted(
        {
            _local_name(project, local)
            for remote, local in files
            if _secret_looking(remote) or _secret_looking(str(local))
        }
    )
    return ", ".join(names) or "(none)"


def parity_rows(project: Project) -> list[Row]:
    """Every row `tandem parity` prints, from the project on disk and the app it ships."""
    from tandem.env.modal_image import check_builder_version

    check_builder_version(project)
    image_steps(project)  # a bad lock is named before the app that reads it is imported
    app = load_app(project)
    docker, modal = docker_facts(project), modal_facts(project, app.functions[0].image)
    return compare(docker, modal, project) + app_rows(project, app, docker, modal)


def _files(own: set[str], other: set[str]) -> str:
    only = sorted(own - other)
    return f"{len(own)} files" + (
        f", only here: {', '.join(only[:5])}" + (" ..." if len(only) > 5 else "") if only else ""
    )


def _secret_looking(name: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(Path(name).name.lower(), pattern) for pattern in SECRET_LOOKING)


def _pairs(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items()) or "(none)"


def format_report(rows: list[Row]) -> str:
    return format_table(
        ("field", "docker", "modal", "match"),
        [(r.field, shorten(r.docker, 48), shorten(r.modal, 48), r.status) for r in rows],
    )
