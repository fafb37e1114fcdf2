"""Reading a Dockerfile: whatever render wrote or a person edited, parity reads it or names the line it
cannot read, in one line, and never crashes."""

import random

import pytest

from support import REPO
from tandem.cli import main
from tandem.env.parity import docker_facts
from tandem.env.settings import load_project
from tandem.errors import UsageError

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()

EDITS = [
    # (text replaced, replacement, the line named, what the one line says about it)
    ("PYTHONUNBUFFERED=1", 'PYTHONUNBUFFERED="1\nRUN echo pwned"', 29, 'ENV instruction (the " quote opened in'),
    ("PYTHONUNBUFFERED=1", "PYTHONUNBUFFERED='1", 29, "ENV instruction (the ' quote opened in"),
    ("gcc libc6-dev", 'gcc "libc6-dev', 23, "RUN instruction (No closing quotation)"),
    ("--requirements /tmp/requirements-modal.txt", "--requirements", 17, "RUN instruction (an argument is missing)"),
    ("WORKDIR /app", "WORKDIR", 40, "WORKDIR instruction (an argument is missing)"),
    ("USER tandem", "USER", 41, "USER instruction (an argument is missing)"),
    ("COPY src ./src", "COPY", 43, "COPY instruction (an argument is missing)"),
    ("ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9", 'ARG UV_IMAGE="ghcr.io', 9, 'ARG instruction (the " quote'),
    ("ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH", "ENV VIRTUAL_ENV", 28, "ENV must have two arguments"),
    ("PATH=/opt/venv/bin:$PATH", "PATH", 28, 'can\'t find = in "PATH"'),
]


@pytest.mark.parametrize("old, new, line, says", EDITS, ids=[new for _, new, _, _ in EDITS])
def test_a_hand_edited_dockerfile_is_named_by_line_in_one_line(project_dir, old, new, line, says, capsys):
    dockerfile = project_dir / "docker" / "Dockerfile"
    assert old in DOCKERFILE
    dockerfile.write_text(DOCKERFILE.replace(old, new, 1))
    assert main(["parity", "--project", str(project_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    assert captured.err.startswith(f"tandem parity: error: {dockerfile} line {line}: "), captured.err
    assert says in captured.err and captured.err.endswith("run `tandem render` to generate it\n")


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "holds no instructions"),
        (b"# only a comment\n", "holds no instructions"),
        (b"RUN echo no base\n", "has no FROM instruction"),
        (b"\x00\x01\x02", "holds no instructions"),
        (bytes(range(128, 256)), "is not a text file"),
    ],
)
def test_a_dockerfile_that_is_no_dockerfile_is_one_line(project_dir, content, says, capsys):
    (project_dir / "docker" / "Dockerfile").write_bytes(content)
    assert main(["parity", "--project", str(project_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_a_folder_in_place_of_the_dockerfile_is_one_line(project_dir, capsys):
    (project_dir / "docker" / "Dockerfile").unlink()
    (project_dir / "docker" / "Dockerfile").mkdir()
    assert main(["parity", "--project", str(project_dir)]) == 2
    assert capsys.readouterr().err == (
        f"tandem parity: error: {project_dir / 'docker' / 'Dockerfile'} cannot be read (Is a directory); "
        "run `tandem render` to write it\n"
    )


def test_no_edit_of_the_dockerfile_crashes_the_reader(project):
    """Cut at every line, and a quote, a backslash or a NUL put at many places: each reads, or is named in
    one line (never another exception)."""
    lines = DOCKERFILE.split("\n")
    texts = ["\n".join(lines[:n]) for n in range(len(lines))]
    rng = random.Random(0)
    for _ in range(300):
        at = rng.randrange(len(DOCKERFILE))
        texts.append(DOCKERFILE[:at] + rng.choice(["'", '"', "\\", "\\\n", "\x00", "$(", "\n", "="]) + DOCKERFILE[at:])
    outcomes = {"read": 0, "named": 0}
    for text in texts:
        try:
            docker_facts(project, text)
            outcomes["read"] += 1
        except UsageError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["named"] += 1
    assert outcomes["read"] > 0 and outcomes["named"] > 0, outcomes


def test_the_rendered_dockerfile_reads_back_as_the_settings_say(project_dir):
    facts = docker_facts(load_project(project_dir))
    assert facts.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert facts.env["PATH"] == "/opt/venv/bin:$PATH"  # a variable stays as written
    assert (facts.workdir, facts.user, facts.apt_packages) == ("/app", "tandem", ["gcc", "libc6-dev"])
