"""Where torch.compile keeps what it compiled, so that the next process starts warm: a retry, a
continuation call, a new container, each rank of the next run.

The cache lives in the data directory, the one place every target keeps between processes (the data
Volume on Modal, the ./data bind mount in compose, ./data here): <data dir>/compile-cache/<key>/. The key
hashes torch's version and CUDA build, the environment digest (settings + lock, which every image carries)
and tandem's source, so a changed lock or source starts a fresh cache instead of reusing a stale one.
Inductor's own caches (FX graphs, AOT autograd) and Triton's kernels go there; a user's
TORCHINDUCTOR_CACHE_DIR wins.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

INDUCTOR = "TORCHINDUCTOR_CACHE_DIR"
TRITON = "TRITON_CACHE_DIR"
FOLDER = "compile-cache"


def cache_key() -> str:
    import torch

    from tandem.check.environment import source_digest
    from tandem.env.digest import DIGEST_VAR

    parts = [torch.__version__, str(torch.version.cuda), os.environ.get(DIGEST_VAR, "no image"), source_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def user_chose_a_cache() -> bool:
    """Whether TORCHINDUCTOR_CACHE_DIR names a folder of the user's: torch itself writes its default
    (a temporary folder, gone with the container) into the variable once anything asked for it."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    given = os.environ.get(INDUCTOR)
    return bool(given) and os.path.abspath(given) != os.path.abspath(default_cache_dir())


def use_compile_cache(data_dir: str | Path) -> tuple[Path, bool]:
    """Point inductor and Triton at this run shape's persistent cache; (the folder, whether it held
    anything already). Call before torch.compile compiles."""
    if user_chose_a_cache():
        folder = Path(os.environ[INDUCTOR])
    else:
        folder = Path(data_dir) / FOLDER / cache_key()
        os.environ[INDUCTOR] = str(folder)
    os.environ.setdefault(TRITON, str(folder / "triton"))
    warm = folder.is_dir() and any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder, warm
