"""Checksummed, atomic downloads into the data directory.

A file is only ever used after its md5 matches the published one. Downloads stream into a temporary
file beside the destination and are renamed into place once verified, so an interrupted run leaves
nothing that a later run could mistake for the real file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tandem.errors import UsageError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """A file published at `url` whose bytes hash to `md5`."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def md5_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def fetch(remote: RemoteFile, folder: Path) -> Path:
    """Return the verified copy of `remote` in `folder`, downloading it when missing, partial or corrupt."""
    dest = Path(folder) / remote.filename
    if dest.exists():
        if md5_of(dest) == remote.md5:
            return dest
        print(f"{dest} fails its md5 check (partial or corrupt); fetching it again", file=sys.stderr)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {dest.parent} ({exc}); pass a writable data directory") from exc

    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{remote.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _download(remote.url, out, dest)
        if actual != remote.md5:
            raise UsageError(
                f"{remote.filename} from {remote.url} has md5 {actual}, expected {remote.md5}: the download "
                f"was cut short or the file changed at the source; run again to retry, or place a verified "
                f"copy at {dest}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, out, dest: Path) -> str:
    """Stream `url` into the open file `out` with a progress bar; return the md5 of what was written."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:  # URLError and socket errors are OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise UsageError(
            f"could not download {url} ({reason}); check the network, or place the file at {dest}"
        ) from exc
    return digest.hexdigest()
