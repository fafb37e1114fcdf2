import hashlib
import io

import pytest

from tandem.data import download
from tandem.data.download import RemoteFile, fetch, md5_of
from tandem.errors import UsageError

CONTENT = bytes(range(256)) * 64


@pytest.fixture
def remote(tmp_path):
    source = tmp_path / "served" / "blob.bin.gz"
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    return RemoteFile(source.as_uri(), hashlib.md5(CONTENT).hexdigest())


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_md5_of_matches_hashlib(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    assert md5_of(path) == hashlib.md5(CONTENT).hexdigest()


def test_filename_is_the_last_url_segment():
    assert RemoteFile("https://host/a/b/train-images-idx3-ubyte.gz", "0").filename == "train-images-idx3-ubyte.gz"


def test_fetch_downloads_verifies_and_leaves_only_the_file(remote, tmp_path):
    folder = tmp_path / "data" / "set"  # created on demand
    path = fetch(remote, folder)
    assert path == folder / "blob.bin.gz"
    assert path.read_bytes() == CONTENT
    assert leftovers(folder) == ["blob.bin.gz"]


def test_fetch_keeps_a_verified_file_without_downloading(remote, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "blob.bin.gz").write_bytes(CONTENT)
    unreachable = RemoteFile((tmp_path / "gone" / "blob.bin.gz").as_uri(), remote.md5)
    assert fetch(unreachable, folder).read_bytes() == CONTENT


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 3], lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], lambda b: b""],
    ids=["truncated", "corrupt", "empty"],
)
def test_fetch_replaces_a_partial_or_corrupt_file(remote, tmp_path, capsys, damage):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "blob.bin.gz").write_bytes(damage(CONTENT))
    assert fetch(remote, folder).read_bytes() == CONTENT
    assert "fails its md5 check" in capsys.readouterr().err
    assert leftovers(folder) == ["blob.bin.gz"]


def test_fetch_refuses_a_download_with_the_wrong_checksum(remote, tmp_path):
    folder = tmp_path / "data"
    wrong = RemoteFile(remote.url, "0" * 32)
    with pytest.raises(UsageError) as info:
        fetch(wrong, folder)
    message = str(info.value)
    assert "blob.bin.gz" in message and "0" * 32 in message and remote.md5 in message
    assert "retry" in message and "\n" not in message
    assert leftovers(folder) == []  # nothing unverified is left behind


def test_fetch_refuses_to_replace_a_corrupt_file_with_a_bad_download(remote, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "blob.bin.gz").write_bytes(b"junk")
    with pytest.raises(UsageError, match="blob.bin.gz"):
        fetch(RemoteFile(remote.url, "0" * 32), folder)
    assert leftovers(folder) == ["blob.bin.gz"]  # still checked, and refetched, on the next run


def test_fetch_reports_an_unreachable_source(tmp_path):
    missing = RemoteFile((tmp_path / "nowhere" / "blob.bin.gz").as_uri(), "0" * 32)
    with pytest.raises(UsageError, match=r"could not download .*blob\.bin\.gz.*place the file at"):
        fetch(missing, tmp_path / "data")
    assert leftovers(tmp_path / "data") == []


def test_an_interrupted_download_leaves_nothing_behind(remote, tmp_path, monkeypatch):
    class Dropped(io.BytesIO):
        headers = {"Content-Length": str(len(CONTENT))}

        def read(self, size=-1):
            if self.tell() >= len(CONTENT) // 2:
                raise ConnectionResetError("connection reset by peer")
            return super().read(min(size, 1000))

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Dropped(CONTENT))
    folder = tmp_path / "data"
    with pytest.raises(UsageError, match="connection reset"):
        fetch(remote, folder)
    assert leftovers(folder) == []
