"""The base image's digest: what its tag resolves to now, and recording it in pyproject.toml.

Two sources: a registry, asked over its HTTP v2 API (no engine needed, so a Modal-only machine can pin),
or the local engine's copy of the tag (the digest it was pulled from or pushed to the registry with).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError

from tandem.errors import UsageError
from tandem.files import write_text_atomic

SOURCES = ("registry", "engine")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Index types first: a multi-platform tag is pinned by its index (what `docker pull` records), so each
# machine still picks its own platform; a single-platform tag answers with its manifest.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_SECTION = re.compile(r"^\s*\[\s*tool\s*\.\s*tandem\s*\.\s*image\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""^(?P<head>\s*base_image_digest\s*=\s*)(?P<value>"[^"\\]*"|'[^']*')(?P<tail>.*)$""", re.S)


class Unresolved(UsageError):
    """The tag could not be resolved from a source: the message names the fix, `reason` is the short why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageRef:
    registry: str  # as Docker names it: docker.io, ghcr.io, 127.0.0.1:5000
    repository: str  # the path in that registry (library/python on Docker Hub)
    tag: str

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def loopback(self) -> bool:
        return _is_loopback(self.registry)


def parse_ref(ref: str) -> ImageRef:
    """A tag reference as the engine reads it ("python:3.11" is docker.io/library/python:3.11)."""
    from docker.auth import resolve_repository_name
    from docker.utils import parse_repository_tag

    name, tag = parse_repository_tag(ref)
    registry, repository = resolve_repository_name(name)
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return ImageRef(registry, repository, tag or "latest")


def _is_loopback(host_port: str) -> bool:
    host = host_port.rsplit(":", 1)[0] if not host_port.startswith("[") else host_port[1 : host_port.find("]")]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Resolved:
    digest: str
    source: str  # where it was read, for messages: "the registry 127.0.0.1:5000", "the local engine"


def resolve(ref: str, source: str, recorded: str = "", timeout: float = 20) -> Resolved:
    """The digest `ref` resolves to now, from `source` (registry | engine). A local image known under
    several digests of that repository keeps the recorded one when it is among them."""
    if source == "registry":
        return Resolved(registry_digest(ref, timeout), f"the registry {parse_ref(ref).registry}")
    digests = engine_digests(ref, timeout)
    return Resolved(recorded if recorded in digests else digests[0], "the local engine")


# -- registry -------------------------------------------------------------------------------------------


def registry_digest(ref: str, timeout: float = 20) -> str:
    """The Docker-Content-Digest the registry answers for the tag (HEAD /v2/<name>/manifests/<tag>), with an
    anonymous pull token when the registry asks for one. Loopback registries are plain HTTP, as the engine
    treats them."""
    image = parse_ref(ref)
    scheme = "http" if image.loopback else "https"
    url = f"{scheme}://{image.api_host}/v2/{image.repository}/manifests/{image.tag}"
    try:
        response = _fetch_manifest(url, image, timeout)
    except HTTPError as exc:
        raise _http_problem(ref, image, exc.code) from None
    except (URLError, OSError, ValueError) as exc:  # refused, DNS, TLS, timeout, a bad token answer
        why = getattr(exc, "reason", None) or exc
        raise Unresolved(
            f"cannot reach the registry {image.api_host} for {ref} ({why}): check the network (and HTTPS_PROXY), "
            f"or `docker pull {ref}` and run `tandem pin-base --from engine`",
            f"the registry {image.api_host} is unreachable ({why})",
        ) from None
    digest = response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(response.body).hexdigest()
    if not DIGEST.fullmatch(digest):
        raise Unresolved(
            f"the registry {image.api_host} answered {ref} with the digest {digest[:80]!r}, not sha256:<64 hex>; "
            "pin it by hand or use --from engine",
            f"the registry {image.api_host} answered a digest that is not sha256",
        )
    return digest


def _fetch_manifest(url: str, image: ImageRef, timeout: float) -> _Response:
    token = None
    try:
        response = _manifest(url, "HEAD", None, timeout)
    except HTTPError as exc:
        token = _pull_token(exc, image, timeout) if exc.code == 401 else None
        if token is None:
            raise
        response = _manifest(url, "HEAD", token, timeout)
    if not response.headers.get("Docker-Content-Digest"):  # optional on HEAD: hash what GET returns
        response = _manifest(url, "GET", token, timeout)
    return response


@dataclass
class _Response:
    headers: dict
    body: bytes


def _manifest(url: str, method: str, token: str | None, timeout: float) -> _Response:
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with _open(urllib.request.Request(url, method=method, headers=headers), timeout) as response:
        return _Response(response.headers, response.read() if method == "GET" else b"")


def _open(request: urllib.request.Request, timeout: float):
    # A loopback registry is never reached through a proxy (the engine does the same).
    host = urllib.parse.urlsplit(request.full_url).netloc
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if _is_loopback(host) else None
    return (opener or urllib.request.build_opener()).open(request, timeout=timeout)


def _pull_token(challenge: HTTPError, image: ImageRef, timeout: float) -> str | None:
    """The anonymous token a `Bearer realm=...` challenge offers (Docker Hub and ghcr.io ask for one)."""
    header = challenge.headers.get("WWW-Authenticate", "")
    if not header.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', header))
    realm = params.pop("realm", "")
    if not realm:
        return None
    params.setdefault("scope", f"repository:{image.repository}:pull")
    url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(params)
    with _open(urllib.request.Request(url), timeout) as response:
        answer = json.loads(response.read())
    return answer.get("token") or answer.get("access_token")


def _http_problem(ref: str, image: ImageRef, code: int) -> Unresolved:
    host = image.api_host
    if code == 404:
        return Unresolved(
            f"{ref}: the registry {host} has no such tag (HTTP 404); fix base_image in pyproject.toml",
            f"the registry {host} has no such tag",
        )
    if code in (401, 403):
        return Unresolved(
            f"{ref}: the registry {host} refused an anonymous pull (HTTP {code}): the repository does not exist or "
            f"needs a login; check base_image, or `docker login` and `docker pull {ref}`, then "
            "`tandem pin-base --from engine`",
            f"the registry {host} refused an anonymous pull",
        )
    return Unresolved(
        f"{ref}: the registry {host} answered HTTP {code}; try again, or `docker pull {ref}` and use --from engine",
        f"the registry {host} answered HTTP {code}",
    )


# -- engine ---------------------------------------------------------------------------------------------


def engine_digests(ref: str, timeout: float = 20) -> list[str]:
    """The digests the local engine knows `ref` by in its own repository (RepoDigests), sorted."""
    try:
        import docker
    except ImportError:
        raise Unresolved(
            "--from engine needs the docker package: install the dev tools (`uv pip install -r requirements-dev.txt`) "
            "or use --from registry",
            "no docker package to ask the engine with",
        ) from None
    image = parse_ref(ref)
    try:
        client = docker.from_env(timeout=int(timeout))
        try:
            attrs = client.images.get(ref).attrs
        finally:
            client.close()
    except docker.errors.ImageNotFound:
        raise Unresolved(
            f"{ref} is not in the local engine: `docker pull {ref}` first, or use --from registry",
            f"{ref} is not in the local engine",
        ) from None
    except docker.errors.DockerException as exc:
        raise Unresolved(
            f"no Docker engine answers ({str(exc).split(': ', 1)[0]}): start one (`sudo systemctl start docker`), "
            "or use --from registry",
            "no Docker engine answers",
        ) from None
    digests = sorted(
        digest
        for name, _, digest in (entry.partition("@") for entry in attrs.get("RepoDigests") or [])
        if _same_repository(name, image)
    )
    if not digests:
        raise Unresolved(
            f"the local {ref} has no digest from {image.registry}/{image.repository} (it was built or tagged here, "
            f"never pulled or pushed): `docker pull {ref}`, or use --from registry",
            f"the local {ref} was never pulled or pushed",
        )
    return digests


def _same_repository(name: str, image: ImageRef) -> bool:
    other = parse_ref(name)
    return (other.registry, other.repository) == (image.registry, image.repository)


# -- pyproject.toml -------------------------------------------------------------------------------------


def with_base_digest(text: str, digest: str) -> str:
    """`text` (a pyproject.toml) with [tool.tandem.image] base_image_digest set to `digest`. Only that value
    changes; the key is added after base_image when absent. Comments and layout stay as they are."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _SECTION.match(line)), None)
    if start is None:
        raise UsageError("pyproject.toml has no [tool.tandem.image] table to record the digest in")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if match := _KEY.match(lines[i]):
            lines[i] = f'{match["head"]}"{digest}"{match["tail"]}'
            break
    else:
        after = next((i for i in range(start + 1, end) if re.match(r"\s*base_image\s*=", lines[i])), start)
        indent = re.match(r"\s*", lines[after]).group(0) if after != start else ""
        lines.insert(after + 1, f'{indent}base_image_digest = "{digest}"\n')
        if not lines[after].endswith("\n"):
            lines[after] += "\n"
    edited = "".join(lines)
    _same_but_digest(text, edited, digest)
    return edited


def _same_but_digest(before: str, after: str, digest: str) -> None:
    """Refuses an edit that changed anything but the one value (a layout the line edit misread)."""
    wanted = copy.deepcopy(tomllib.loads(before))
    wanted["tool"]["tandem"]["image"]["base_image_digest"] = digest
    try:
        ok = tomllib.loads(after) == wanted
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise UsageError(
            "could not set base_image_digest in pyproject.toml without touching anything else; "
            f'set base_image_digest = "{digest}" in [tool.tandem.image] by hand'
        )


def write_base_digest(pyproject: Path, digest: str) -> bool:
    """Records `digest` in the file; False when it was already there (nothing written)."""
    text = pyproject.read_text()
    edited = with_base_digest(text, digest)
    if edited == text:
        return False
    write_text_atomic(pyproject, edited)
    return True
