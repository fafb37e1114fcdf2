"""Writers for tiny files in the real dataset formats, and a fixture that publishes them over HTTP on loopback."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

IDX_TYPE_BYTES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX: 0, 0, type byte, ndim, big-endian uint32 sizes, big-endian elements."""
    type_byte = IDX_TYPE_BYTES[f"{array.dtype.kind}{array.dtype.itemsize}"]
    header = struct.pack(">BBBB", 0, 0, type_byte, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def cifar_tar_bytes(batches: dict[str, tuple[np.ndarray, list[int]]], class_names: list[str]) -> bytes:
    """A cifar-10-python.tar.gz with the given batches (uint8 (n, 3, 32, 32) images, labels) and meta."""
    members = {
        name: {"batch_label": name, "data": images.reshape(len(images), -1), "labels": labels}
        for name, (images, labels) in batches.items()
    }
    members["batches.meta"] = {"label_names": class_names, "num_vis": 3072}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def tiny_cifar(seed: int = 0, per_batch: int = 3):
    """Random batches named as in the real tarball: five train batches and one test batch."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, per_batch).tolist())
        for name in names
    }


def tiny_idx_dataset(seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def idx_gz_files(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {name: gzip.compress(idx_bytes(array)) for name, array in arrays.items()}


def write_image(path: Path, color, size=(8, 8), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


@pytest.fixture
def make():
    """The writers above, for tests to build their own files (fixtures work under any import mode)."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        idx_gz_files=idx_gz_files,
        tiny_idx_dataset=tiny_idx_dataset,
        cifar_tar_bytes=cifar_tar_bytes,
        tiny_cifar=tiny_cifar,
        write_image=write_image,
    )


@pytest.fixture
def publish(tmp_path, monkeypatch):
    """publish(name, {filename: bytes}) serves the files over HTTP on 127.0.0.1 and points torchvision's
    class for that dataset at them, with their real md5s (the only change: where the files come from).
    Returns the folder they are served from."""
    from torchvision import datasets

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def publish_(name: str, files: dict[str, bytes]) -> Path:
        folder = served / name
        folder.mkdir(parents=True, exist_ok=True)
        for filename, content in files.items():
            (folder / filename).write_bytes(content)
        md5s = {filename: hashlib.md5(content).hexdigest() for filename, content in files.items()}
        if name == "cifar10":
            cls = datasets.CIFAR10
            (filename,) = files
            monkeypatch.setattr(cls, "url", f"{base}/{name}/{filename}")
            monkeypatch.setattr(cls, "tgz_md5", md5s[filename])
            members = tar_member_md5s(files[filename])
            monkeypatch.setattr(cls, "train_list", [[n, members.get(n, "")] for n, _ in cls.train_list])
            monkeypatch.setattr(cls, "test_list", [[n, members.get(n, "")] for n, _ in cls.test_list])
            monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": members.get("batches.meta", "")})
        else:
            cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
            monkeypatch.setattr(cls, "mirrors", [f"{base}/{name}/"])
            monkeypatch.setattr(cls, "resources", list(md5s.items()))
        return folder

    yield publish_
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def tar_member_md5s(tarball: bytes) -> dict[str, str]:
    if tarball[:2] != b"\x1f\x8b":  # not a gzip: a test serving a damaged download
        return {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return {
            m.name.rsplit("/", 1)[-1]: hashlib.md5(tar.extractfile(m).read()).hexdigest() for m in tar if m.isfile()
        }
