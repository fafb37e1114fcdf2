"""A lock whose hash does not match the artefact must stop the install: the images rely on it."""

import base64
import hashlib
import subprocess
import sys
import zipfile

import pytest


def make_wheel(directory):
    """A minimal valid wheel, so the test needs no index."""
    path = directory / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": b"VALUE = 1\n",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("tinypkg-1.0.dist-info/RECORD,,")
        wheel.writestr("tinypkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def install(tmp_path, lock_text):
    lock = tmp_path / "requirements.txt"
    lock.write_text(lock_text)
    target = tmp_path / "target"
    return subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "--require-hashes", "--no-index", "--find-links",
         str(tmp_path / "wheels"), "--target", str(target), "--python", sys.executable, "-r", str(lock)],
        capture_output=True, text=True,
    )  # fmt: skip


@pytest.fixture
def wheel_hash(tmp_path):
    (tmp_path / "wheels").mkdir()
    wheel = make_wheel(tmp_path / "wheels")
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_matching_hash_installs(tmp_path, wheel_hash):
    done = install(tmp_path, f"tinypkg==1.0 \\\n    --hash=sha256:{wheel_hash}\n")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "target" / "tinypkg" / "__init__.py").exists()


def test_tampered_hash_refuses_to_install(tmp_path, wheel_hash):
    tampered = ("0" if wheel_hash[0] != "0" else "1") + wheel_hash[1:]
    done = install(tmp_path, f"tinypkg==1.0 \\\n    --hash=sha256:{tampered}\n")
    assert done.returncode != 0
    assert "hash" in done.stderr.lower()
    assert not (tmp_path / "target" / "tinypkg").exists()
