"""What the Docker image must not hold or do: run as root, keep the proxy CA bundle (a build secret) in any
layer or in its history, carry secret-looking env vars, or take in what .dockerignore keeps out."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile

import pytest

from tandem.env.settings import looks_like_secret

PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", re.S)
CONTEXT_IMAGE = "tandem-test/planted-context:latest"


def test_runtime_container_is_not_root(compose, compose_image):
    uid = compose("run", "--rm", "--entrypoint", "id", "check", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0


class _Chunks(io.RawIOBase):
    """A file object over the byte chunks the SDK streams, for tarfile's stream mode."""

    def __init__(self, chunks):
        self._chunks, self._rest = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            self._rest = next(self._chunks, None)
            if self._rest is None:
                self._rest = b""
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


@pytest.fixture(scope="module")
def bundle_markers(ca_bundle, image_file, standin_build_args, tmp_path_factory) -> list[bytes]:
    """Lines of the certificates only the CA bundle has. The rest of it is Debian's public CA set, which
    the base image itself and certifi ship; finding those proves nothing."""
    dest = tmp_path_factory.mktemp("base-ca")
    base = image_file(standin_build_args["PYTHON_IMAGE"], "/etc/ssl/certs/ca-certificates.crt", dest)
    public = set(PEM.findall(base.read_bytes()))
    own = [body for body in PEM.findall(ca_bundle.read_bytes()) if body not in public]
    # A base64 line from inside each: found again in any PEM copy of that certificate.
    return [body.splitlines()[len(body.splitlines()) // 2] for body in own]


def _scan_layer(stream, markers: list[bytes], bundle: bytes) -> tuple[list[str], list[str]]:
    """(files holding the bundle or a line of its own certificates, files under /run/secrets) in one layer."""
    leaks, secrets = [], []
    overlap = max((len(m) for m in markers), default=1)
    with tarfile.open(fileobj=stream, mode="r|") as tf:
        for member in tf:
            name = member.name.removeprefix("./")
            if name.startswith("run/secrets/"):
                secrets.append(name)
            if not member.isfile():
                continue
            f, tail = tf.extractfile(member), b""
            whole = hashlib.sha256() if member.size == len(bundle) else None
            while chunk := f.read(8 << 20):
                if whole:
                    whole.update(chunk)
                window = tail + chunk
                if any(m in window for m in markers):
                    leaks.append(name)
                    break
                tail = window[-overlap:]
            else:
                if whole and whole.digest() == hashlib.sha256(bundle).digest():
                    leaks.append(name)
    return leaks, secrets


def scan_image(image: str, markers: list[bytes], bundle: bytes) -> tuple[int, list[str], list[str]]:
    """Every layer of the saved image, not only its final filesystem: a file a later layer removes still
    ships in the layer that added it. Returns (layers, leaks, files under /run/secrets)."""
    import docker  # the SDK (a local import: ruff takes the repo's docker/ folder for first-party)

    leaks, secrets, layers = [], [], 0
    # `docker save` of several GB takes a minute before its first byte: longer than the SDK's default timeout.
    client = docker.from_env(timeout=900)
    try:
        saved = io.BufferedReader(_Chunks(client.images.get(image).save(chunk_size=1 << 20)), 1 << 20)
        with tarfile.open(fileobj=saved, mode="r|") as outer:
            for member in outer:
                if member.name.endswith("layer.tar"):
                    layers += 1
                    found, under_secrets = _scan_layer(outer.extractfile(member), markers, bundle)
                    leaks += [f"{member.name}:{name}" for name in found]
                    secrets += [f"{member.name}:{name}" for name in under_secrets]
                elif member.isfile() and member.name.endswith(".json"):  # image config and manifest
                    data = outer.extractfile(member).read()
                    leaks += [member.name for m in [*markers, b"BEGIN CERTIFICATE"] if m in data]
    finally:
        client.close()
    return layers, leaks, secrets


def test_layer_scan_finds_a_planted_certificate(buildkit_build, standin_build_args, remove_images, tmp_path):
    """The scan's own control: a made-up certificate, removed again by a later layer, and a file under
    /run/secrets are both found."""
    body = b"".join(base64.b64encode(os.urandom(48)) + b"\n" for _ in range(8))
    fake = b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"
    (tmp_path / "fake.pem").write_bytes(fake)
    (tmp_path / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE\nFROM ${PYTHON_IMAGE}\nCOPY fake.pem /opt/fake.pem\n"
        "RUN rm /opt/fake.pem && mkdir -p /run/secrets && echo x > /run/secrets/planted\n"
    )
    tag = "tandem-test/leak-control:latest"
    remove_images(tag)
    buildkit_build("-t", tag, f"--build-arg=PYTHON_IMAGE={standin_build_args['PYTHON_IMAGE']}", context=tmp_path)
    for markers in ([body.splitlines()[4]], []):  # found by a line of it, and by the whole file's bytes
        _, leaks, secrets = scan_image(tag, markers, fake)
        assert [leak.split(":", 1)[1] for leak in leaks] == ["opt/fake.pem"]
        assert [name.split(":", 1)[1] for name in secrets] == ["run/secrets/planted"]


def test_ca_bundle_is_in_no_layer(compose_image, ca_bundle, bundle_markers):
    layers, leaks, secrets = scan_image(compose_image, bundle_markers, ca_bundle.read_bytes())
    assert layers > 0
    assert not leaks, f"the CA bundle's certificates are in the image: {leaks}"
    assert not secrets, f"files under /run/secrets in the image: {secrets}"


def test_history_holds_no_certificate(docker_client, compose_image, bundle_markers):
    history = [step.get("CreatedBy", "").encode() for step in docker_client.images.get(compose_image).history()]
    assert history
    for created_by in history:
        assert b"BEGIN CERTIFICATE" not in created_by
        assert not any(m in created_by for m in bundle_markers), created_by


def test_image_env_has_nothing_that_looks_like_a_secret(docker_client, compose_image, ca_bundle):
    env = dict(item.split("=", 1) for item in docker_client.images.get(compose_image).attrs["Config"]["Env"])
    secret_like = [k for k in env if looks_like_secret(k)]
    assert not secret_like
    assert not [k for k, v in env.items() if "BEGIN CERTIFICATE" in v or v == str(ca_bundle)]


# Planted in a copy of the build context: none of it may reach the builder, let alone the image.
PLANTED = {
    "src/.env": "API_TOKEN=planted\n",
    ".env": "API_TOKEN=planted\n",
    ".env.local": "API_TOKEN=planted\n",
    "src/tandem/__pycache__/x.cpython-311.pyc": "planted",
    "src/tandem/x.pyc": "planted",
    ".git/config": "[core]\n",
    ".venv/pyvenv.cfg": "home = /usr\n",
    ".tox/lint/marker": "planted",
    ".pytest_cache/marker": "planted",
    ".ruff_cache/marker": "planted",
    "data/digits.npz": "planted",
    "runs/dit-1/checkpoints/step_0000001.pt": "planted",
    "outputs/dit-1/config.json": "{}",
    "model.ckpt": "planted",
}


@pytest.fixture
def planted_context(context_copy):
    for name, text in PLANTED.items():
        (context_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (context_copy / name).write_text(text)
    return context_copy


def test_dockerignore_keeps_planted_files_out_of_the_build_context(buildkit_build, planted_context, tmp_path):
    """What the builder receives, exported as files: `COPY . /` of the context into an empty image."""
    probe = tmp_path / "context.Dockerfile"
    probe.write_text("FROM scratch\nCOPY . /\n")
    out = tmp_path / "received"
    buildkit_build("-f", str(probe), "--output", f"type=local,dest={out}", context=planted_context)
    received = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"pyproject.toml", "requirements-modal.txt", "src/tandem/__init__.py"} <= received
    assert not received & set(PLANTED), sorted(received & set(PLANTED))


def test_dockerignore_keeps_planted_files_out_of_the_image(
    buildkit_build, docker_client, standin_build_args, planted_context, remove_images
):
    remove_images(CONTEXT_IMAGE)
    args = [f"--build-arg={k}={v}" for k, v in standin_build_args.items()]
    buildkit_build("--target", "runtime", "-t", CONTEXT_IMAGE, "-f", str(planted_context / "docker/Dockerfile"), *args, context=planted_context)  # fmt: skip
    script = "ls /app/src/tandem/__init__.py && find /app -name '.env*' -o -name '*.pyc' -o -name __pycache__"
    out = docker_client.containers.run(CONTEXT_IMAGE, ["sh", "-ec", script], remove=True).decode().split()
    assert out == ["/app/src/tandem/__init__.py"]
