"""A lock whose hashes no longer match what the index serves stops the Docker build at the install step."""

from __future__ import annotations

import re

import pytest

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
