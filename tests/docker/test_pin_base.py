"""`tandem pin-base` against a real registry on this machine: the stand-in base is pushed to it as
<registry>/python:3.11-slim-bookworm, a copy of the project is pointed at that tag and pinned, and both
images must then pull the digest, not the tag, also once the tag names another image.

The tests run in file order: the second moves the tag the first pinned."""

from __future__ import annotations

import contextlib
import io

import pytest

from support import copy_project, edit
from tandem import doctor
from tandem.cli import main
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.parity import parity_rows
from tandem.env.settings import load_project

TAG = "3.11-slim-bookworm"
BUILT = "tandem-test/pinned-runtime:latest"
RETAGGED_LABEL = "tandem.test.retagged"


def tandem(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def push(client, repository: str) -> str:
    """Pushes repository:TAG; the manifest digest the registry stored, as the push reports it."""
    digests = []
    for event in client.images.push(repository, TAG, stream=True, decode=True):
        if "error" in event:
            pytest.fail(f"docker push {repository}:{TAG}: {event['error']}", pytrace=False)
        digests += [event["aux"]["Digest"]] if "Digest" in event.get("aux", {}) else []
    (digest,) = digests
    return digest


@pytest.fixture(scope="module")
def base(docker_client, local_registry, standin_build_args, remove_images) -> dict[str, str]:
    """The stand-in pushed to the registry: its reference and the digest the push reported."""
    repository = f"{local_registry}/python"
    docker_client.images.get(standin_build_args["PYTHON_IMAGE"]).tag(repository, TAG)
    remove_images(f"{repository}:{TAG}")
    digest = push(docker_client, repository)
    remove_images(f"{repository}@{digest}")  # the push left this name on the stand-in too
    return {"repository": repository, "ref": f"{repository}:{TAG}", "digest": digest}


@pytest.fixture(scope="module")
def pinned(tmp_path_factory, base) -> dict:
    """A project copy on the registry's tag, after `tandem pin-base` and `tandem render`."""
    root = copy_project(tmp_path_factory.mktemp("pinned"))
    edit(root / "pyproject.toml", 'base_image = "python:3.11-slim-bookworm"', f'base_image = "{base["ref"]}"')
    assert tandem("render", "--project", str(root))[0] == 0
    pin = tandem("pin-base", "--project", str(root))
    render = tandem("render", "--project", str(root))
    return {"root": root, "pin": pin, "render": render}


def test_the_registry_digest_is_recorded_and_both_images_pull_it(pinned, base):
    root, ref, digest = pinned["root"], base["ref"], base["digest"]
    assert pinned["pin"] == (
        0,
        f'wrote base_image_digest = "{digest}" to pyproject.toml ({ref} in the registry {ref.split("/")[0]})\n'
        "now run `tandem render` so docker/Dockerfile and compose.yaml pull the pinned base\n",
        "",
    )
    assert pinned["render"][0] == 0
    assert f'\nbase_image_digest = "{digest}"\n' in (root / "pyproject.toml").read_text()
    assert f"\nARG PYTHON_IMAGE={ref}@{digest}\n" in (root / "docker" / "Dockerfile").read_text()
    project = load_project(root)
    layers = modal_layers(build_modal_image(project), project.settings.modal_builder_version)
    assert layers[0].commands[0] == f"FROM {ref}@{digest}"
    rows = {row.field: row for row in parity_rows(project)}
    assert [field for field, row in rows.items() if not row.match] == []
    assert (rows["base image digest"].docker, rows["base image digest"].modal) == (digest, digest)
    # The engine's copy was pushed there, so it knows the same digest.
    for source in ("registry", "engine"):
        assert tandem("pin-base", "--check", "--from", source, "--project", str(root))[0] == 0


def test_an_unknown_tag_is_one_line_naming_the_setting(tmp_path, base):
    root = copy_project(tmp_path)
    missing = f"{base['repository']}:3.11-missing"
    edit(root / "pyproject.toml", 'base_image = "python:3.11-slim-bookworm"', f'base_image = "{missing}"')
    host = base["repository"].split("/")[0]
    assert tandem("pin-base", "--project", str(root)) == (
        2,
        "",
        f"tandem pin-base: error: {missing}: the registry {host} has no such tag (HTTP 404); fix base_image in "
        "pyproject.toml\n",
    )


def test_a_moved_tag_is_reported_and_the_pinned_build_keeps_the_old_base(
    pinned, base, docker_client, buildkit_build, standin_build_args, remove_images
):
    root, ref, old = pinned["root"], base["ref"], base["digest"]
    dockerfile = f"FROM {standin_build_args['PYTHON_IMAGE']}\nLABEL {RETAGGED_LABEL}=1\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=ref, rm=True)
    new = push(docker_client, base["repository"])
    assert new != old

    for source, where in (("registry", f"the registry {ref.split('/')[0]}"), ("engine", "the local engine")):
        assert tandem("pin-base", "--check", "--from", source, "--project", str(root)) == (
            1,
            f"{ref} now resolves to {new} in {where}, but pyproject.toml pins {old}; "
            "run `tandem pin-base` to move the pin\n",
            "",
        )
    finding = doctor.base_image_pinned(doctor.Context(load_project(root), "H100"))
    assert (finding.status, finding.detail) == (
        "warn",
        f"{ref} now resolves to {new} in the registry {ref.split('/')[0]}, but the settings pin {old}",
    )

    # Nothing generated moved with the tag: parity and the Dockerfile still name the pinned digest.
    rows = {row.field: row for row in parity_rows(load_project(root))}
    assert [field for field, row in rows.items() if not row.match] == []
    assert (rows["base image digest"].docker, rows["base image digest"].modal) == (old, old)
    assert f"\nARG PYTHON_IMAGE={ref}@{old}\n" in (root / "docker" / "Dockerfile").read_text()

    # BuildKit pulls the pinned digest from the registry (the default PYTHON_IMAGE; only uv is a stand-in).
    remove_images(BUILT)
    build = buildkit_build(
        "--target", "runtime", "-t", BUILT, "-f", str(root / "docker" / "Dockerfile"),
        f"--build-arg=UV_IMAGE={standin_build_args['UV_IMAGE']}", context=root,
    )  # fmt: skip
    assert f"FROM {ref}@{old}" in build.stderr
    assert RETAGGED_LABEL not in (docker_client.images.get(BUILT).labels or {})
