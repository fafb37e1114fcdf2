"""`tandem pin-base`: the pyproject.toml edit, references, and the registry client against a stub registry
on this machine (the real registry runs in tests/docker/test_pin_base.py)."""

import hashlib
import http.server
import threading

import pytest

from support import REPO, edit
from tandem.cli import main
from tandem.env.base_image import ImageRef, parse_ref, registry_digest, with_base_digest, write_base_digest
from tandem.env.dockerfile import render
from tandem.env.modal_image import build_modal_image
from tandem.env.modal_layers import modal_layers
from tandem.env.settings import load_project
from tandem.errors import UsageError

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
INDEX_FIRST = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)


# -- the pyproject.toml edit ------------------------------------------------------------------------------


def test_only_the_digest_line_of_the_repository_pyproject_changes():
    text = (REPO / "pyproject.toml").read_text()
    edited = with_base_digest(text, DIGEST)
    changed = [(a, b) for a, b in zip(text.splitlines(), edited.splitlines(), strict=True) if a != b]
    assert changed == [('base_image_digest = ""', f'base_image_digest = "{DIGEST}"')]


def test_a_recorded_digest_is_replaced_and_its_comment_kept():
    text = f"[tool.tandem.image]\nbase_image = \"python:3.11\"\nbase_image_digest = '{OTHER}'  # moved by hand\n"
    assert with_base_digest(text, DIGEST) == (
        f'[tool.tandem.image]\nbase_image = "python:3.11"\nbase_image_digest = "{DIGEST}"  # moved by hand\n'
    )


def test_a_missing_key_is_added_after_base_image_in_its_table():
    text = (
        '[tool.other]\nbase_image_digest = "x"\n\n'
        '[ tool.tandem.image ]  # the settings\npython = "3.11"\n  base_image = "python:3.11"\nthreads = 4\n'
        "[tool.tandem.image.env]\nA = '1'\n"
    )
    assert with_base_digest(text, DIGEST) == (
        '[tool.other]\nbase_image_digest = "x"\n\n'
        '[ tool.tandem.image ]  # the settings\npython = "3.11"\n  base_image = "python:3.11"\n'
        f'  base_image_digest = "{DIGEST}"\nthreads = 4\n'
        "[tool.tandem.image.env]\nA = '1'\n"
    )


def test_a_layout_the_line_edit_would_break_is_refused():
    text = '[tool.tandem.image]\nbase_image = "python:3.11"\nbase_image_digest = """\n"""\n'
    with pytest.raises(UsageError) as caught:
        with_base_digest(text, DIGEST)
    assert str(caught.value) == (
        "could not set base_image_digest in pyproject.toml without touching anything else; "
        f'set base_image_digest = "{DIGEST}" in [tool.tandem.image] by hand'
    )


def test_the_same_digest_writes_nothing(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text(f'[tool.tandem.image]\nbase_image_digest = "{DIGEST}"\n')
    assert write_base_digest(path, DIGEST) is False
    assert write_base_digest(path, OTHER) is True
    assert path.read_text() == f'[tool.tandem.image]\nbase_image_digest = "{OTHER}"\n'


# -- references ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "parsed", "api_host", "loopback"),
    [
        (
            "python:3.11-slim-bookworm",
            ImageRef("docker.io", "library/python", "3.11-slim-bookworm"),
            "registry-1.docker.io",
            False,
        ),
        ("ghcr.io/astral-sh/uv:0.13.9", ImageRef("ghcr.io", "astral-sh/uv", "0.13.9"), "ghcr.io", False),
        ("127.0.0.1:5000/python:3.11", ImageRef("127.0.0.1:5000", "python", "3.11"), "127.0.0.1:5000", True),
        ("localhost:5000/team/python", ImageRef("localhost:5000", "team/python", "latest"), "localhost:5000", True),
        (
            "docker.io/library/python:3.11",
            ImageRef("docker.io", "library/python", "3.11"),
            "registry-1.docker.io",
            False,
        ),
    ],
)
def test_references_are_read_as_the_engine_reads_them(ref, parsed, api_host, loopback):
    assert parse_ref(ref) == parsed
    assert (parse_ref(ref).api_host, parse_ref(ref).loopback) == (api_host, loopback)


def test_a_recorded_digest_pins_the_dockerfile_compose_and_the_modal_image(project_dir):
    edit(project_dir / "pyproject.toml", 'base_image_digest = ""', f'base_image_digest = "{DIGEST}"')
    project = load_project(project_dir)
    assert f"\nARG PYTHON_IMAGE=python:3.11-slim-bookworm@{DIGEST}\n" in render(project)
    layers = modal_layers(build_modal_image(project), project.settings.modal_builder_version)
    assert layers[0].commands[0] == f"FROM python:3.11-slim-bookworm@{DIGEST}"


# -- the registry client, against a stub registry -----------------------------------------------------------


class StubRegistry(http.server.ThreadingHTTPServer):
    """Answers /v2/python/manifests/<tag> as a registry does; what it answers is set per test."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tags = {"3.11-slim-bookworm": (b'{"schemaVersion": 2}', DIGEST)}  # tag -> (manifest, digest header)
        self.token = None  # when set, manifests need `Authorization: Bearer <token>`
        self.seen = []  # (method, path, Accept, Authorization)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)

    def _answer(self, with_body):
        stub = self.server
        stub.seen.append((self.command, self.path, self.headers["Accept"], self.headers["Authorization"]))
        if self.path.startswith("/token?"):
            return self._send(200, b'{"token": "t0k"}', {})
        if stub.token and self.headers["Authorization"] != f"Bearer {stub.token}":
            realm = f'Bearer realm="http://{stub.host}/token",service="stub",scope="repository:python:pull"'
            return self._send(401, b"", {"WWW-Authenticate": realm})
        tag = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith("/v2/python/manifests/") or tag not in stub.tags:
            return self._send(404, b"", {})
        body, digest = stub.tags[tag]
        self._send(200, body if with_body else b"", {"Docker-Content-Digest": digest} if digest else {})

    def _send(self, code, body, headers):
        self.send_response(code)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stub():
    server = StubRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_digest_header_of_a_head_request_is_read_with_index_types_first(stub):
    assert registry_digest(f"{stub.host}/python:3.11-slim-bookworm") == DIGEST
    assert stub.seen == [("HEAD", "/v2/python/manifests/3.11-slim-bookworm", INDEX_FIRST, None)]


def test_an_anonymous_token_is_fetched_when_the_registry_asks(stub):
    stub.token = "t0k"
    assert registry_digest(f"{stub.host}/python:3.11-slim-bookworm") == DIGEST
    assert [(method, path, auth) for method, path, _, auth in stub.seen] == [
        ("HEAD", "/v2/python/manifests/3.11-slim-bookworm", None),
        ("GET", "/token?service=stub&scope=repository%3Apython%3Apull", None),
        ("HEAD", "/v2/python/manifests/3.11-slim-bookworm", "Bearer t0k"),
    ]


def test_without_a_digest_header_the_manifest_is_hashed(stub):
    stub.tags["3.11-slim-bookworm"] = (b'{"schemaVersion": 2, "x": 1}', None)
    expected = "sha256:" + hashlib.sha256(b'{"schemaVersion": 2, "x": 1}').hexdigest()
    assert registry_digest(f"{stub.host}/python:3.11-slim-bookworm") == expected


def test_a_loopback_registry_is_not_reached_through_the_proxy(stub, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "")
    assert registry_digest(f"{stub.host}/python:3.11-slim-bookworm") == DIGEST


def test_an_unknown_tag_names_the_setting_to_fix(stub):
    with pytest.raises(UsageError) as caught:
        registry_digest(f"{stub.host}/python:3.11-nope")
    assert str(caught.value) == (
        f"{stub.host}/python:3.11-nope: the registry {stub.host} has no such tag (HTTP 404); "
        "fix base_image in pyproject.toml"
    )


def test_an_unreachable_registry_names_the_other_source(stub):
    host = stub.host
    stub.shutdown()
    stub.server_close()
    with pytest.raises(UsageError) as caught:
        registry_digest(f"{host}/python:3.11")
    assert str(caught.value) == (
        f"cannot reach the registry {host} for {host}/python:3.11 ([Errno 111] Connection refused): check the "
        f"network (and HTTPS_PROXY), or `docker pull {host}/python:3.11` and run `tandem pin-base --from engine`"
    )


# -- the command --------------------------------------------------------------------------------------------


@pytest.fixture
def stub_project(project_dir, stub):
    """The project copy with base_image on the stub registry, rendered (so render --check passes)."""
    edit(project_dir / "pyproject.toml", '"python:3.11-slim-bookworm"', f'"{stub.host}/python:3.11-slim-bookworm"')
    assert main(["render", "--project", str(project_dir)]) == 0
    return project_dir


def test_pin_base_records_the_digest_and_says_to_render(stub_project, stub, capsys):
    capsys.readouterr()
    assert main(["pin-base", "--project", str(stub_project)]) == 0
    assert capsys.readouterr().out == (
        f'wrote base_image_digest = "{DIGEST}" to pyproject.toml ({stub.host}/python:3.11-slim-bookworm in the '
        f"registry {stub.host})\nnow run `tandem render` so docker/Dockerfile and compose.yaml pull the pinned base\n"
    )
    assert f'base_image_digest = "{DIGEST}"\n' in (stub_project / "pyproject.toml").read_text()
    assert main(["render", "--check", "--project", str(stub_project)]) == 1
    assert main(["pin-base", "--project", str(stub_project)]) == 0
    assert capsys.readouterr().out.endswith(
        f"already pinned: {stub.host}/python:3.11-slim-bookworm@{DIGEST} (the registry {stub.host}); nothing written\n"
    )


def test_pin_base_check_fails_when_the_tag_moves(stub_project, stub, capsys):
    assert main(["pin-base", "--project", str(stub_project)]) == 0
    assert main(["pin-base", "--check", "--project", str(stub_project)]) == 0
    assert capsys.readouterr().out.endswith(
        f"pinned: {stub.host}/python:3.11-slim-bookworm still resolves to {DIGEST} in the registry {stub.host}\n"
    )
    stub.tags["3.11-slim-bookworm"] = (b"{}", OTHER)
    assert main(["pin-base", "--check", "--project", str(stub_project)]) == 1
    assert capsys.readouterr().out == (
        f"{stub.host}/python:3.11-slim-bookworm now resolves to {OTHER} in the registry {stub.host}, but "
        f"pyproject.toml pins {DIGEST}; run `tandem pin-base` to move the pin\n"
    )
    assert f'base_image_digest = "{DIGEST}"\n' in (stub_project / "pyproject.toml").read_text()


def test_pin_base_check_without_a_digest_fails_offline(project_dir, capsys):
    assert main(["pin-base", "--check", "--project", str(project_dir)]) == 1
    assert capsys.readouterr().out == (
        "not pinned: base_image_digest is empty, so both images take whatever python:3.11-slim-bookworm names; "
        "run `tandem pin-base`\n"
    )


def test_pin_base_from_an_unreachable_engine_is_one_line(project_dir, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project_dir}/no-engine.sock")
    before = (project_dir / "pyproject.toml").read_bytes()
    assert main(["pin-base", "--from", "engine", "--project", str(project_dir)]) == 2
    assert capsys.readouterr().err == (
        "tandem pin-base: error: no Docker engine answers (Error while fetching server API version): start one "
        "(`sudo systemctl start docker`), or use --from registry\n"
    )
    assert (project_dir / "pyproject.toml").read_bytes() == before
