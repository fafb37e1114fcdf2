"""`tandem doctor`: is this machine ready for a target? Each check explains itself and names the fix."""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tandem.check.environment import nvidia_driver_version
from tandem.env.modal_gpus import CLUSTER_GPU_TYPES, GPU_ARCH, GPU_TYPES, MAX_CLUSTER_NODES
from tandem.env.settings import Project, load_project
from tandem.errors import UsageError

TARGETS = ("local", "docker", "modal")
# The oldest driver each CUDA major of the locked torch build runs on.
MIN_DRIVER = {13: 580, 12: 525}
BASE_IMAGE_TIMEOUT_S = 5  # the registry is asked with a short timeout: an offline machine answers at once
IMAGE_DISK_GB = 20  # the CUDA venv (~6 GB) twice during the build, plus the base and the cache


@dataclass
class Context:
    project: Project
    modal_gpu: str


@dataclass
class Finding:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""


def register(subparsers: argparse._SubParsersAction) -> None:
    text = "Check that this machine has what a target needs; explain each problem and its fix."
    parser = subparsers.add_parser("doctor", help=text, description=text)
    parser.add_argument("--target", choices=TARGETS, default="local", help="what you want to run (default: local)")
    parser.add_argument("--modal-gpu", default="", help="Modal GPU type to check kernels for (default: settings)")
    parser.add_argument("--project", metavar="DIR", default=None, help="project root")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=doctor_command)


def doctor_command(args) -> int:
    project = load_project(args.project)
    gpu_type = args.modal_gpu or project.settings.modal_gpu
    if gpu_type.split(":")[0] not in GPU_ARCH:
        raise UsageError(f"--modal-gpu {gpu_type!r} is not a Modal GPU type; use one of {', '.join(GPU_ARCH)}")
    context = Context(project, gpu_type)
    findings = [probe(context) for probe in PROBES[args.target]]
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        print(format_findings(findings, args.target))
    return 1 if any(f.status == "fail" for f in findings) else 0


def format_findings(findings: list[Finding], target: str) -> str:
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}
    width = max(len(f.name) for f in findings)
    lines = [f"tandem doctor --target {target}"]
    for f in findings:
        lines.append(f"  [{marks[f.status]}] {f.name.ljust(width)}  {f.detail}")
        if f.fix and f.status in ("fail", "warn"):
            lines.append(f"         {' ' * width}  fix: {f.fix}")
    bad = sum(f.status == "fail" for f in findings)
    lines.append(f"{'ready' if not bad else f'not ready: {bad} problem(s)'} for {target}")
    return "\n".join(lines)


# -- checks ---------------------------------------------------------------------------------------------


def python_version(ctx: Context) -> Finding:
    have, want = ".".join(platform.python_version_tuple()[:2]), ctx.project.settings.python
    if have == want:
        return Finding("python", "ok", f"Python {platform.python_version()} matches the settings ({want})")
    return Finding(
        "python", "fail", f"Python {have} here, the images use {want}",
        f"run with Python {want} (e.g. `uv venv --python {want}`) so local runs match the images",
    )  # fmt: skip


def lock_fresh(ctx: Context) -> Finding:
    """Offline: every dependency in pyproject.toml is pinned by the lock to a version it allows."""
    import tomllib

    from tandem.env.lockfile import read_lock

    try:
        pins = {p.name: p.version for p in read_lock(ctx.project.lock_path)}
    except UsageError as exc:
        return Finding("lock", "fail", str(exc), "run `tandem lock`")
    wanted = tomllib.loads(ctx.project.pyproject_path.read_text())["project"]["dependencies"]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            return Finding(
                "lock", "fail", f"{text!r} in pyproject.toml is not what the lock pins ({pins.get(name, 'absent')})",
                "run `tandem lock` then `tandem render`",
            )  # fmt: skip
    return Finding("lock", "ok", f"{len(pins)} pins with hashes cover the {len(wanted)} dependencies")


def generated_fresh(ctx: Context) -> Finding:
    from tandem.env.render import staleness_diff

    diff = staleness_diff(ctx.project)
    if not diff:
        return Finding("generated files", "ok", "docker/Dockerfile and compose.yaml match the settings and lock")
    stale = sorted(set(re.findall(r"^--- (\S+)", diff, re.M)))
    return Finding("generated files", "fail", f"stale: {', '.join(stale)}", "run `tandem render` and commit")


def base_image_pinned(ctx: Context) -> Finding:
    """Offline: is the base pinned by digest? With a registry or an engine in reach: does the tag still
    resolve to that digest (builds keep the pinned one either way; a moved tag means updates to take)."""
    from tandem.env.base_image import SOURCES, Unresolved, resolve

    s = ctx.project.settings
    if not s.base_image_digest:
        return Finding(
            "base image", "warn", f"{s.base_image} is not pinned by digest: each build takes whatever the tag names then",
            "run `tandem pin-base`, then `tandem render`",
        )  # fmt: skip
    problems = []
    for source in SOURCES:
        try:
            now = resolve(s.base_image, source, s.base_image_digest, timeout=BASE_IMAGE_TIMEOUT_S)
        except Unresolved as exc:
            problems.append(exc.reason)
            continue
        if now.digest == s.base_image_digest:
            return Finding("base image", "ok", f"{s.base_ref}: the tag still resolves to it in {now.source}")
        return Finding(
            "base image", "warn",
            f"{s.base_image} now resolves to {now.digest} in {now.source}, but the settings pin {s.base_image_digest}",
            "builds keep the pinned one; to take the new one run `tandem pin-base`, then `tandem render`",
        )  # fmt: skip
    return Finding("base image", "ok", f"{s.base_ref} (the tag could not be checked now: {'; '.join(problems)})")


def docker_engine(ctx: Context) -> Finding:
    if not shutil.which("docker"):
        return Finding(
            "docker engine", "fail", "no docker CLI", "install Docker Engine (docs.docker.com/engine/install)"
        )
    out = _run(["docker", "info", "--format", "{{json .}}"])
    if out is None:
        return Finding(
            "docker engine", "fail", "the docker CLI cannot reach an engine", "start it: `sudo systemctl start docker`"
        )
    info = json.loads(out)
    runtimes = sorted(info.get("Runtimes") or {})
    docker_root = info.get("DockerRootDir", "/var/lib/docker")
    return Finding(
        "docker engine",
        "ok",
        f"Docker {info.get('ServerVersion')} (runtimes: {', '.join(runtimes)}; root {docker_root})",
    )


def compose_v2(ctx: Context) -> Finding:
    out = _run(["docker", "compose", "version", "--short"]) if shutil.which("docker") else None
    if out and int(re.match(r"v?(\d+)", out.strip()).group(1)) >= 2:
        return Finding("docker compose", "ok", f"Compose {out.strip()}")
    return Finding("docker compose", "fail", "Compose v2 plugin missing", "install the docker-compose-plugin package")


def nvidia_runtime(ctx: Context) -> Finding:
    out = _run(["docker", "info", "--format", "{{json .Runtimes}}"]) if shutil.which("docker") else None
    if out and "nvidia" in out:
        return Finding("nvidia container runtime", "ok", "registered with Docker")
    if not nvidia_driver_version():
        return Finding("nvidia container runtime", "warn", "no NVIDIA GPU here: containers run on CPU",
                       "use `docker compose -f compose.yaml -f compose.cpu.yaml run ...`")  # fmt: skip
    return Finding(
        "nvidia container runtime", "fail", "a GPU is present but Docker has no nvidia runtime",
        "install nvidia-container-toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker` and restart Docker",
    )  # fmt: skip


def nvidia_driver(ctx: Context) -> Finding:
    driver = nvidia_driver_version()
    if not driver:  # answered without importing torch, which takes seconds
        return Finding("nvidia driver", "skip", "no NVIDIA driver: training runs on MPS or CPU here")
    import torch

    cuda_major = int((torch.version.cuda or "0").split(".")[0])
    need = MIN_DRIVER.get(cuda_major)
    if need and int(driver.split(".")[0]) < need:
        return Finding(
            "nvidia driver", "fail", f"driver {driver} is older than {need}, the minimum for CUDA {torch.version.cuda} wheels",
            f"upgrade the driver to {need} or later; or lock a torch built for an older CUDA (e.g. a cu126 index)",
        )  # fmt: skip
    return Finding("nvidia driver", "ok", f"driver {driver} runs CUDA {torch.version.cuda} (needs {need}+)")


def local_gpu_kernels(ctx: Context) -> Finding:
    if not nvidia_driver_version():
        return Finding("local gpu kernels", "skip", "no NVIDIA driver, so no CUDA device")
    import torch

    if not torch.cuda.is_available():
        return Finding("local gpu kernels", "skip", "no CUDA device visible")
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
    return _kernels("local gpu kernels", torch.cuda.get_device_name(0), arch)


def modal_gpu_kernels(ctx: Context) -> Finding:
    gpu = ctx.modal_gpu
    return _kernels("modal gpu kernels", gpu, GPU_ARCH[gpu.split(":")[0]])


def modal_clusters(ctx: Context) -> Finding:
    """Whether this GPU type can run `--nodes N` (a Modal cluster), and the flags that do."""
    gpu = ctx.modal_gpu.split(":")[0]
    if gpu in CLUSTER_GPU_TYPES:
        return Finding(
            "modal clusters", "ok",
            f"{gpu} forms clusters: modal run modal_app/train.py dit --gpu {gpu} --gpus {GPU_TYPES[gpu]} --nodes 2 "
            f"(2 to {MAX_CLUSTER_NODES} nodes; checked again before each call)",
        )  # fmt: skip
    return Finding(
        "modal clusters", "skip",
        f"{gpu} runs one container per call; --nodes needs {', '.join(CLUSTER_GPU_TYPES)} (whole hosts of 8)",
    )  # fmt: skip


def _kernels(name: str, gpu: str, arch: str) -> Finding:
    import torch

    built = torch.cuda.get_arch_list()
    # A GPU runs kernels built for its own major at a lower or equal minor (sm_89 runs sm_86 code).
    ok = arch in built or any(b[:-1] == arch[:-1] and b <= arch for b in built if b.startswith("sm_"))
    if ok:
        return Finding(name, "ok", f"{gpu} ({arch}) is covered by torch {torch.__version__} ({' '.join(built)})")
    return Finding(
        name, "fail", f"{gpu} ({arch}) has no kernels in torch {torch.__version__} (built for {' '.join(built)})",
        "lock a torch build that includes this architecture, or pick another GPU type",
    )  # fmt: skip


def modal_credentials(ctx: Context) -> Finding:
    try:
        import modal  # noqa: F401
    except ImportError:
        return Finding("modal", "fail", "the modal client is not installed", "install from the lock: `tox -e modal`")
    from tandem.env.modal_login import LOGIN, credentials_source

    if source := credentials_source():
        return Finding("modal", "ok", f"credentials: {source}")
    return Finding("modal", "fail", "no Modal credentials", LOGIN)


def disk_space(ctx: Context) -> Finding:
    info = _run(["docker", "info", "--format", "{{.DockerRootDir}}"]) if shutil.which("docker") else None
    where = Path(info.strip()) if info and Path(info.strip()).exists() else ctx.project.root
    free = shutil.disk_usage(where).free / 1e9
    if free >= IMAGE_DISK_GB:
        return Finding("disk", "ok", f"{free:.0f} GB free at {where}")
    return Finding("disk", "fail", f"only {free:.1f} GB free at {where}; the image needs about {IMAGE_DISK_GB} GB",
                   "free space, e.g. `docker system prune` / `docker builder prune`")  # fmt: skip


def _run(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# What each target needs, asked in this order (a probe looks, and says what it found and the fix).
PROBES: dict[str, list[Callable]] = {
    "local": [python_version, lock_fresh, nvidia_driver, local_gpu_kernels],
    "docker": [
        lock_fresh,
        generated_fresh,
        base_image_pinned,
        docker_engine,
        compose_v2,
        nvidia_runtime,
        nvidia_driver,
        disk_space,
    ],
    "modal": [lock_fresh, generated_fresh, base_image_pinned, modal_credentials, modal_gpu_kernels, modal_clusters],
}
