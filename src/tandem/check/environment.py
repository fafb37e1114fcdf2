"""The environment half of a fingerprint: interpreter, distributions vs the lock, env vars, source, device."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import tandem
from tandem.env.digest import DIGEST_VAR, env_digest, image_env
from tandem.env.lockfile import DEV_LOCK, read_lock
from tandem.env.settings import Project

# Installers an interpreter may ship with (the official images' system Python does, a uv venv does not);
# they never run during training, so their presence is not a difference in behaviour.
BOOTSTRAP_TOOLS = frozenset({"pip", "setuptools", "wheel"})
# Variables outside the settings block that change what torch does; recorded whenever set. (Not
# PYTHONHASHSEED: tox sets a random one, and no trainer iterates over hash-ordered strings.)
BEHAVIOUR_PREFIXES = (
    "PYTORCH_",
    "TORCH_",
    "CUDA_",
    "CUBLAS_",
    "CUDNN_",
    "NCCL_",
    "OMP_",
    "MKL_",
    "KMP_",
    "HF_",
)


def collect_environment(project: Project) -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu": _cpu_model(),
        "distributions": distributions(project),
        "env": environment_variables(project),
        "source_sha256": source_digest(),
        "settings_digest": env_digest(project),
        "image_digest": os.environ.get(DIGEST_VAR),
        "device": device_facts(),
    }


def distributions(project: Project) -> dict:
    """Every locked package for this platform with what is installed, then anything installed beyond."""
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    locked = {p.name: p.version for p in read_lock(project.lock_path) if not p.marker or Marker(p.marker).evaluate()}
    report = {
        name: {
            "locked": version,
            "installed": installed.get(name),
            "matches_lock": installed.get(name) is not None and installed[name] in SpecifierSet(f"=={version}"),
        }
        for name, version in sorted(locked.items())
    }
    # Host tooling from the dev lock and the project itself are expected outside the images.
    tooling = {p.name for p in read_lock(project.root / DEV_LOCK)} if (project.root / DEV_LOCK).exists() else set()
    extra = sorted(set(installed) - set(locked) - BOOTSTRAP_TOOLS - tooling - {"tandem"})
    return {"locked": report, "not_in_lock": {name: installed[name] for name in extra}}


def environment_variables(project: Project) -> dict:
    names = set(project.settings.env) | set(image_env(project))
    names |= {k for k in os.environ if k.startswith(BEHAVIOUR_PREFIXES)}
    names.discard(DIGEST_VAR)  # recorded as image_digest
    return {name: os.environ.get(name) for name in sorted(names)}


def source_digest() -> str:
    """A hash of the tandem package as installed: every .py file's path and bytes."""
    root = Path(tandem.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def device_facts() -> dict:
    import torch

    facts = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "gpu": None,
        "gpu_count": 0,
        "driver": None,
    }
    if facts["cuda_available"]:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_count"] = torch.cuda.device_count()
        facts["capability"] = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
        facts["driver"] = _nvidia_driver()
    return facts


def _nvidia_driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
