"""`tandem parity`: docker/Dockerfile and the Modal image, compared field by field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tandem.env.image_facts import ImageFacts, describe
from tandem.env.modal_layers import ModalLayer, modal_layers
from tandem.env.settings import Project


@dataclass
class Row:
    field: str
    docker: str
    modal: str
    expected: str | None = None  # parity of two wrong images is no comfort: some fields must hold alone

    @property
    def match(self) -> bool:
        return self.docker == self.modal and self.expected in (None, self.docker)


@dataclass
class ModalDockerfile:
    """The Modal image as one Dockerfile plus the build context its COPY lines name."""

    text: str
    context: dict[str, Path]


def modal_dockerfile(layers: list[ModalLayer]) -> ModalDockerfile:
    lines: list[str] = []
    context: dict[str, Path] = {}
    for layer in layers:
        lines += [c for c in layer.commands if not (lines and c == "FROM base")]
        context.update({name.lstrip("/"): path for name, path in layer.context_files.items()})
        for local, remote in layer.mounts:
            name = f"mounts{remote}"
            context[name] = local
            lines.append(f"COPY {name} {remote}")
    return ModalDockerfile(text="\n".join(lines) + "\n", context=context)


def docker_facts(project: Project, text: str | None = None) -> ImageFacts:
    text = project.dockerfile_path.read_text() if text is None else text
    return describe(text, lambda name: project.root / name, project.root / "src")


def modal_facts(project: Project, image=None) -> ImageFacts:
    if image is None:
        from tandem.env.modal_image import build_modal_image

        image = build_modal_image(project)
    twin = modal_dockerfile(modal_layers(image))
    return describe(twin.text, lambda name: twin.context.get(name.lstrip("/")), project.root / "src")


def compare(docker: ImageFacts, modal: ImageFacts) -> list[Row]:
    rows = [
        Row("base image", docker.base_image, modal.base_image),
        Row("python", docker.python, modal.python),
        Row("uv version", docker.uv_version, modal.uv_version),
        Row("apt packages", " ".join(docker.apt_packages), " ".join(modal.apt_packages)),
    ]
    for key in dict.fromkeys([*docker.env, *modal.env]):
        rows.append(Row(f"env {key}", docker.env.get(key, "(unset)"), modal.env.get(key, "(unset)")))
    rows += [
        Row("lock (sha256)", " ".join(docker.lock_sha256) or "(none)", " ".join(modal.lock_sha256) or "(none)"),
        Row(
            "installs outside lock",
            " ".join(docker.extra_installs) or "(none)",
            " ".join(modal.extra_installs) or "(none)",
            expected="(none)",
        ),
        Row("workdir", docker.workdir, modal.workdir),
        Row("source location", docker.source_dir or "(missing)", modal.source_dir or "(missing)"),
        Row("source after deps", str(docker.source_after_deps), str(modal.source_after_deps), expected="True"),
    ]
    return rows


def format_table(rows: list[Row]) -> str:
    headers = ("field", "docker", "modal", "match")
    table = [(r.field, _short(r.docker), _short(r.modal), "yes" if r.match else "NO") for r in rows]
    widths = [max(len(str(row[i])) for row in [headers, *table]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(lines)


def _short(value: str, limit: int = 48) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."
