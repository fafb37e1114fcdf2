"""Docker build performance: docker/Dockerfile against a naive one-stage image, built in the same run.

    python benchmarks/docker_build.py [--keep-cache] [--keep-images] [--json OUT]

For each Dockerfile, on a copy of the build context: a cold build, then a warm rebuild after a source-only
edit (a comment appended to a file under src/). Cold means the engine's BuildKit cache, download cache
mounts included, is pruned first with `docker builder prune -af`: every later build on this engine starts
over too. --keep-cache skips the prune (the first builds are then not cold). Both builds use the local
base-image stand-ins (docker/testing/build-standins.sh) and get the CA bundle as the `ca_bundle` secret.
The naive Dockerfile is benchmarks/naive.Dockerfile.

Sizes: each image, the base image, and the venv inside each (`du -sb /opt/venv`). Prints a Markdown
summary; --json writes every figure. Stdlib only; needs a running engine (docker/testing/ensure-engine.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTING = REPO / "docker" / "testing"
CONTEXT_FILES = ("pyproject.toml", "requirements-modal.txt", ".dockerignore", "docker/Dockerfile")
EDITED = "src/tandem/__init__.py"
CA_BUNDLE = Path(os.environ.get("TANDEM_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
TARGETS = {
    # name: (Dockerfile, extra build flags, the step whose reuse the warm rebuild is about)
    "tandem": (REPO / "docker" / "Dockerfile", ["--target", "runtime"], "uv pip install"),
    "naive": (REPO / "benchmarks" / "naive.Dockerfile", [], "pip install"),
}


def log(msg: str) -> None:
    print(f"docker_build: {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout.strip()


def standin_args() -> dict[str, str]:
    lines = sh(str(TESTING / "build-standins.sh")).split()
    return dict(line.split("=", 1) for line in lines)


def make_context(dest: Path) -> Path:
    for name in CONTEXT_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def edit_source(context: Path) -> None:
    with open(context / EDITED, "a") as f:
        f.write(f"# benchmark edit {time.time_ns()}\n")


def build(name: str, context: Path, tag: str, build_args: dict[str, str], made: list[str]) -> dict:
    """Builds and times one image; its id is added to `made` (a rebuild leaves the previous one untagged)."""
    dockerfile, flags, install = TARGETS[name]
    iidfile = context.parent / f"{name}.iid"
    cmd = [str(TESTING / "docker-buildkit.sh"), "build", "--progress=plain", "-f", str(dockerfile), "-t", tag]
    cmd += ["--iidfile", str(iidfile)]
    cmd += [*flags, *(f"--build-arg={k}={v}" for k, v in build_args.items())]
    if CA_BUNDLE.is_file():
        cmd += ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"]
    start = time.monotonic()
    proc = subprocess.run([*cmd, str(context)], capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"docker_build: {name} build failed:\n" + "\n".join(proc.stderr.splitlines()[-30:]))
    made.append(iidfile.read_text().strip())
    steps = step_times(proc.stderr)
    install_step = next((s for s in steps if install in s["name"]), None)
    return {
        "seconds": round(seconds, 1),
        "install_seconds": install_step and install_step["seconds"],
        "install_cached": bool(install_step and install_step["cached"]),
        "export_seconds": next((s["seconds"] for s in steps if s["name"].startswith("exporting")), None),
        "rebuilt": {s["name"][:60]: s["seconds"] for s in steps if not s["cached"] and s["name"].startswith("[")},
    }


def step_times(progress: str) -> list[dict]:
    """Steps of BuildKit's plain progress output: name, seconds (DONE) and whether it came from cache."""
    names, steps = {}, []
    for line in progress.splitlines():
        if m := re.match(r"#(\d+) (\[.*|exporting.*)$", line):
            names.setdefault(m.group(1), m.group(2))
        elif m := re.match(r"#(\d+) (CACHED|DONE ([\d.]+)s)$", line):
            if m.group(1) in names:
                seconds = float(m.group(3)) if m.group(3) else 0.0
                steps.append({"name": names[m.group(1)], "seconds": seconds, "cached": m.group(2) == "CACHED"})
    return steps


def image_bytes(ref: str) -> int:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", ref))


def venv_bytes(ref: str) -> int:
    return int(sh("docker", "run", "--rm", "--entrypoint", "du", ref, "-sb", "/opt/venv").split()[0])


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--keep-cache", action="store_true", help="do not prune the BuildKit cache first")
    parser.add_argument("--keep-images", action="store_true", help="leave the benchmark images behind")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)

    build_args = standin_args()
    log("disk before: " + sh("df", "-h", "/").splitlines()[-1])
    if not args.keep_cache:
        log("pruning the BuildKit cache (cold builds)")
        sh("docker", "builder", "prune", "-af")
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "cold": not args.keep_cache,
        "engine": sh("docker", "version", "-f", "{{.Server.Version}}"),
        "cpus": os.cpu_count(),
        "base_image": build_args["PYTHON_IMAGE"],
    }
    tags = {name: f"tandem-bench/{name}:latest" for name in TARGETS}
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        context = make_context(Path(tmp) / "context")
        for name, tag in tags.items():
            log(f"{name}: cold build")
            cold = build(name, context, tag, build_args, made)
            edit_source(context)
            log(f"{name}: warm rebuild after editing {EDITED}")
            warm = build(name, context, tag, build_args, made)
            results[name] = {"cold": cold, "warm": warm, "image_bytes": image_bytes(tag), "venv_bytes": venv_bytes(tag)}
            log(f"{name}: cold {cold['seconds']} s, warm {warm['seconds']} s")
    results["base_bytes"] = image_bytes(build_args["PYTHON_IMAGE"])
    if not args.keep_images:
        sh("docker", "image", "rm", "--force", *dict.fromkeys(made))

    t, n = results["tandem"], results["naive"]
    results["warm_speedup"] = round(n["warm"]["seconds"] / t["warm"]["seconds"], 1)
    results["cold_ratio"] = round(n["cold"]["seconds"] / t["cold"]["seconds"], 2)
    budget = (t["venv_bytes"] + results["base_bytes"]) * 1.10
    results["size_vs_venv_plus_base"] = round(t["image_bytes"] / (t["venv_bytes"] + results["base_bytes"]), 3)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results, budget))
    log("disk after: " + sh("df", "-h", "/").splitlines()[-1])
    return 0


def summary(r: dict, budget: float) -> str:
    t, n = r["tandem"], r["naive"]
    rows = [
        ("cold build", f"{t['cold']['seconds']} s", f"{n['cold']['seconds']} s", f"{r['cold_ratio']}x"),
        (
            "  of which the dependency install",
            f"{t['cold']['install_seconds']} s",
            f"{n['cold']['install_seconds']} s",
            "",
        ),
        ("  of which exporting the image", f"{t['cold']['export_seconds']} s", f"{n['cold']['export_seconds']} s", ""),
        (
            "warm rebuild after a source edit",
            f"{t['warm']['seconds']} s",
            f"{n['warm']['seconds']} s",
            f"{r['warm_speedup']}x",
        ),
        ("  dependency install reused", str(t["warm"]["install_cached"]), str(n["warm"]["install_cached"]), ""),
        ("image size", gb(t["image_bytes"]), gb(n["image_bytes"]), ""),
        ("venv (du -sb /opt/venv)", gb(t["venv_bytes"]), gb(n["venv_bytes"]), ""),
    ]
    lines = ["| | docker/Dockerfile | naive | naive / tandem |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += [
        "",
        f"base image {r['base_image']}: {gb(r['base_bytes'])}; image / (venv + base) = "
        f"{r['size_vs_venv_plus_base']} (budget 1.10: {gb(int(budget))})",
        f"targets: warm rebuild < 15 s: {t['warm']['seconds'] < 15}; warm >= 10x faster than naive: "
        f"{r['warm_speedup'] >= 10}; size within venv + base + 10%: {t['image_bytes'] <= budget}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
