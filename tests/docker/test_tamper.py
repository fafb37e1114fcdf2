"""A lock whose hashes no longer match what the index serves stops the Docker build at the install step."""

from __future__ import annotations

import re

import pytest

from support import REPO

REPO_LOCK = REPO / "requirements-modal.txt"
PACKAGE = "tqdm"  # small, pure Python; its lock entry lists a wheel and an sdist
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def lock_entry(text: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", text, re.S | re.M)
    assert match, f"{name} not in the lock"
    return match.group(0)


def tamper(lock_path, name: str, which: slice) -> list[str]:
    """Flips the last hex digit of the chosen hashes of `name`'s entry; returns the hashes it changed."""
    text = lock_path.read_text()
    entry = lock_entry(text, name)
    hashes = HASH.findall(entry)[which]
    changed = entry
    for digest in hashes:
        changed = changed.replace(digest, digest[:-1] + ("0" if digest[-1] != "0" else "1"))
    lock_path.write_text(text.replace(entry, changed))
    return hashes


@pytest.fixture
def build_builder(buildkit_build, standin_build_args, docker_client, tmp_path):
    """Builds the `builder` stage of a context copy; an image it makes is removed at once (it has no tag)."""
    args = [f"--build-arg={k}={v}" for k, v in standin_build_args.items()]
    iidfile = tmp_path / "iid"

    def build(context, *flags: str):
        iidfile.unlink(missing_ok=True)
        dockerfile = str(context / "docker" / "Dockerfile")
        proc = buildkit_build(
            "--target", "builder", "-f", dockerfile, "--iidfile", str(iidfile), *args, *flags,
            context=context, check=False,
        )  # fmt: skip
        if iidfile.exists():
            docker_client.images.remove(iidfile.read_text().strip())
        return proc

    return build


def test_tampered_hashes_fail_the_builder_stage(build_builder, compose_image, context_copy):
    """Every artifact hash of tqdm altered: nothing the index serves for it matches the lock. (compose_image
    first, so the install's download cache is warm and the failing build is quick.)"""
    assert len(tamper(context_copy / "requirements-modal.txt", PACKAGE, slice(None))) == 2
    proc = build_builder(context_copy)
    assert proc.returncode != 0, "the build succeeded with a tampered lock"
    assert re.search(rf"Hash mismatch for `?{PACKAGE}==", proc.stderr), proc.stderr[-3000:]


def test_one_tampered_hash_never_builds_from_source(build_builder, context_copy):
    """Each of tqdm's hashes altered in turn, in a lock cut down to its entry (each install is seconds). The
    sdist's altered: the wheel installs, fine. The wheel's: the build must fail, not fall back to the sdist."""
    lock = context_copy / "requirements-modal.txt"
    entry = lock_entry(lock.read_text(), PACKAGE)
    built_from_source = []
    for which in range(len(HASH.findall(entry))):
        lock.write_text(entry)
        changed = tamper(lock, PACKAGE, slice(which, which + 1))
        # --no-cache: uv's log says how it installed, and a cached step has no log.
        proc = build_builder(context_copy, "--no-cache")
        if f"Building {PACKAGE}==" in proc.stderr:
            built_from_source += changed
            break  # one is enough to fail, and each such build fetches build tools
        else:
            assert proc.returncode == 0 or re.search(rf"Hash mismatch for `?{PACKAGE}==", proc.stderr), proc.stderr
    assert not built_from_source, f"uv built {PACKAGE} from its sdist when this hash was altered: {built_from_source}"


# -----------------------------------------------------------------------------
# the Modal image installs with the same hash checking (its twin: docker/testing/modal_twin.py)


@pytest.fixture
def twin_install(buildkit_build, standin_build_args, docker_client, tmp_path):
    """Builds the Modal twin up to its install step with the given lock text; returns the process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("modal_twin", REPO / "docker" / "testing" / "modal_twin.py")
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    context = twin.write_context(tmp_path / "twin", standin_build_args["PYTHON_IMAGE"], standin_build_args["UV_IMAGE"])
    (lock,) = context.glob(".*_requirements-modal.txt")
    dockerfile = (context / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(dockerfile) if twin.INSTALL_MARK in line)
    (context / "Dockerfile").write_text("\n".join(dockerfile[: install + 1]) + "\n")
    iidfile = tmp_path / "iid"

    def build(text: str):
        lock.write_text(text)
        proc = buildkit_build("--iidfile", str(iidfile), context=context, check=False)
        if iidfile.exists():
            docker_client.images.remove(iidfile.read_text().strip())
        return proc

    return build


def test_tampered_hash_fails_the_modal_twin_install(twin_install):
    lock = REPO_LOCK.read_text()
    entry = lock_entry(lock, PACKAGE)
    tampered = entry.replace(HASH.findall(entry)[0][-4:], "0000")
    proc = twin_install(tampered.replace(HASH.findall(entry)[1][-4:], "0000"))
    assert proc.returncode != 0 and re.search(rf"Hash mismatch for `?{PACKAGE}==", proc.stderr), proc.stderr[-3000:]


def test_dependency_missing_from_the_lock_fails_the_modal_twin_install(twin_install):
    """jinja2 alone: its dependency markupsafe has no hash to check, so it must not install."""
    proc = twin_install(lock_entry(REPO_LOCK.read_text(), "jinja2"))
    assert proc.returncode != 0, "the Modal twin installed a dependency that the lock does not hash"
    assert "Hash-checking is required, but no trusted hash was provided for: `markupsafe`" in proc.stderr
