"""The environment half of a fingerprint: interpreter, distributions vs the lock, env vars, source, device."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
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
from tandem.env.digest import DIGEST_VAR, env_digest
from tandem.env.image_steps import image_env
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
        "distributed": distributed_shape(),
    }


def distributed_shape() -> dict:
    """How many ranks and nodes run this (torchrun's layout; one process otherwise)."""
    from tandem.train.distributed import from_environment

    layout = from_environment()
    return {"world_size": layout.world_size, "nodes": layout.nodes}


def distributions(project: Project) -> dict:
    """Every locked package for this platform with what is installed, then anything installed beyond."""
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }
    locked = locked_packages(project)
    report = {
        name: {
            "locked": version,
            "installed": installed.get(name),
            "matches_lock": installed.get(name) is not None and installed[name] in SpecifierSet(f"=={version}"),
            **import_location(name),
        }
        for name, version in sorted(locked.items())
    }
    # Host tooling from the dev lock and the project itself are expected outside the images.
    tooling = {p.name for p in read_lock(project.root / DEV_LOCK)} if (project.root / DEV_LOCK).exists() else set()
    extra = sorted(set(installed) - set(locked) - BOOTSTRAP_TOOLS - tooling - {"tandem"})
    return {"locked": report, "not_in_lock": {name: installed[name] for name in extra}}


def locked_packages(project: Project) -> dict[str, str]:
    """Name -> version of every package the lock pins for this platform."""
    return {p.name: p.version for p in read_lock(project.lock_path) if not p.marker or Marker(p.marker).evaluate()}


def import_location(name: str) -> dict:
    """Where `import <its top-level module>` finds a distribution's code, and whether that is the
    distribution's own folder: a copy earlier on sys.path (PYTHONPATH, a mounted folder, a runtime's own
    dependencies) would run instead of the locked one."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return {"imported_from": None, "shadowed": False}
    home = Path(dist.locate_file("")).resolve()
    for module in top_level_modules(dist):
        found = _module_path(module)
        if found is not None:
            return {"imported_from": str(found), "shadowed": not found.resolve().is_relative_to(home)}
    return {"imported_from": None, "shadowed": False}


def top_level_modules(dist: importlib.metadata.Distribution) -> list[str]:
    """The importable top-level names a distribution installs: from its top_level.txt where the build wrote
    one (one small file), else from its RECORD (every installed file)."""
    names: dict[str, None] = {}
    listed = dist.read_text("top_level.txt")
    for line in (listed or "").splitlines():
        if line.strip():
            names[line.strip().split("/")[0]] = None
    for file in [] if names else dist.files or []:
        parts = file.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".data")):
            continue
        if len(parts) == 1 and file.suffix in (".py", ".so", ".pyd"):
            names[parts[0].split(".")[0]] = None
        elif len(parts) > 1 and (parts[-1] == "__init__.py" and len(parts) == 2):
            names[parts[0]] = None
    own = canonicalize_name(dist.metadata["Name"] or "").replace("-", "_")
    return sorted((n for n in names if n.isidentifier()), key=lambda n: n.lower() != own)  # its own name first


def _module_path(module: str) -> Path | None:
    """The file a top-level module would be loaded from (its __init__.py for a package), without importing it."""
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None) if loaded is not None else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None and spec.has_location else None
    return Path(origin) if origin else None


def shadowed_packages(fingerprint_distributions: dict) -> dict[str, str]:
    """Locked package -> the path it is imported from, for each one loaded from outside its own install."""
    return {
        name: entry["imported_from"]
        for name, entry in fingerprint_distributions["locked"].items()
        if entry.get("shadowed")
    }


def shadowing_problem(project: Project) -> str | None:
    """One line naming locked packages that import from outside their install, else None."""
    # only where each locked package imports from: a run starts without reading every installed version
    found = {
        name: where["imported_from"]
        for name in locked_packages(project)
        if (where := import_location(name))["shadowed"]
    }
    if not found:
        return None
    listed = ", ".join(f"{name} from {path}" for name, path in sorted(found.items()))
    return (
        f"locked packages load from outside the environment: {listed}; remove that folder from "
        "sys.path (PYTHONPATH, a mounted directory) so the locked versions run"
    )


def check_provenance(environ: dict[str, str] | None = None) -> str | None:
    """At start-up: a locked package imported from outside the environment stops a run inside an image
    (UsageError) and is a warning elsewhere (returned). Nothing to check without the project's lock."""
    from tandem.env.settings import load_project
    from tandem.errors import UsageError

    environ = os.environ if environ is None else environ
    try:
        project = load_project(environ.get("TANDEM_PROJECT_DIR"))
    except UsageError:
        return None
    problem = shadowing_problem(project)
    if problem and environ.get(DIGEST_VAR):
        raise UsageError(problem)
    return f"tandem: warning: {problem}" if problem else None


def environment_variables(project: Project) -> dict:
    names = set(project.settings.env) | set(image_env(project))
    names |= {k for k in os.environ if k.startswith(BEHAVIOUR_PREFIXES)}
    names.discard(DIGEST_VAR)  # recorded as image_digest
    return {name: os.environ.get(name) for name in sorted(names)}


def source_digest(root: Path | None = None) -> str:
    """A hash of the tandem package as installed (or of `root`): every .py file's path and bytes."""
    root = Path(tandem.__file__).parent if root is None else root
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
        facts["driver"] = nvidia_driver_version()
    return facts


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version nvidia-smi reports, or None without a driver (or when it hangs)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
