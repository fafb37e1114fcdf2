"""Everything worth measuring on a lent GPU, in one command (at most about 8 minutes on one H100/H200):

    python benchmarks/gpu.py --out gpu-results            # on the GPU machine
    python benchmarks/gpu.py --out /tmp/gpu-quick --quick  # the same steps on the CPU at tiny sizes (CI)

1. `tandem check` twice: the two fingerprints' digests must be bit-identical (`tandem check --compare`).
2. Bitwise resume on the device with deterministic kernels (eager): a DiT run stopped halfway and resumed ends with
   the same parameters, bit for bit, as one run straight through.
3. `benchmarks/throughput.py` (by its command line) with `--compile --end-to-end`: the classifier at batch
   1024, DiT-S/2 and DiT-B/2 at 3x32x32 at batch 256; step img/s, MFU, and img/s end to end of a 200-step
   run at the default cadence of checkpoints and sample grids.
4. A short DiT run on digits through `tandem train dit`: wall time, img/s and final loss.
5. torch.compile start, cold then warm: the same 3-step `--compile` run twice with one data dir (its
   compile cache); the first step's compile seconds of each (skipped with --quick).
6. With 2+ GPUs: a 2-rank NCCL DDP run (`tandem train --gpus 2`, torchrun underneath; skipped otherwise).

Each step runs as its own process; a failing step is recorded and the rest still run. The results go to
`<out>/gpu.json` and `<out>/gpu.md` (also printed); the exit status is 1 if any step failed.
`--quick` runs on the CPU, with tiny shapes and no compile, in about two minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TANDEM = [sys.executable, "-m", "tandem"]

# Tiny DiT settings for the resume and digits runs in --quick (and the smallest shapes anywhere).
QUICK_DIT = ["--patch-size", "4", "--batch-size", "32", "--samples-per-class", "1", "--sample-steps", "2"]


def run(cmd: list[str], log: Path, timeout: float) -> tuple[bool, float, str]:
    """(succeeded, seconds, last line of its output); the whole output goes to `log`."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        output, ok = done.stdout + done.stderr, done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        output, ok = f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f}s", False
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    last = (output.strip().splitlines() or [""])[-1]
    return ok, time.perf_counter() - start, last[:200]


def step_check(out: Path, device: str, quick: bool) -> dict:
    prints = [out / "check-1.json", out / "check-2.json"]
    seconds, detail = 0.0, ""
    for i, path in enumerate(prints, 1):
        ok, took, last = run([*TANDEM, "check", "--label", f"run{i}", "--out", str(path)], out / f"check-{i}.log", 300)
        seconds += took
        if not ok:
            return {"ok": False, "seconds": seconds, "detail": f"tandem check {i}: {last}"}
    ok, took, last = run([*TANDEM, "check", "--compare", *map(str, prints)], out / "check-compare.log", 60)
    first, second = (json.loads(p.read_text()) for p in prints)
    sections = [k for k in ("cpu", "gpu") if first.get(k) and second.get(k)]
    same = {k: bool(_digests(first[k])) and _digests(first[k]) == _digests(second[k]) for k in sections}
    detail = ", ".join(f"{k} digests {'identical' if v else 'DIFFER'}" for k, v in same.items()) or last
    return {"ok": ok and all(same.values()), "seconds": seconds + took, "detail": detail, "sections": same}


def _digests(section) -> list[str]:
    """Every sha256 digest in a fingerprint's behaviour section, in order."""
    if isinstance(section, dict):
        return [d for key in sorted(section) for d in _digests(section[key])]
    if isinstance(section, list):
        return [d for value in section for d in _digests(value)]
    return [section] if isinstance(section, str) and section.startswith("sha256:") else []


def step_resume(out: Path, device: str, quick: bool) -> dict:
    runs = out / "resume-runs"
    common = ["train", "dit", "--dataset", "digits", "--device", device, "--deterministic", "--steps", "20"]
    common += ["--no-compile"]  # the kernels' determinism, not the compiler's; and three compiles cost minutes
    common += ["--checkpoint-every", "10", "--sample-every", "0", "--log-every", "5", "--runs-dir", str(runs)]
    common += QUICK_DIT if quick else ["--batch-size", "64"]
    seconds = 0.0
    for name, extra, log in (
        ("straight", [], "resume-straight.log"),
        ("resumed", ["--stop-after", "10"], "resume-first-half.log"),
        ("resumed", ["--resume"], "resume-second-half.log"),
    ):
        ok, took, last = run([*TANDEM, *common, "--run-name", name, *extra], out / log, 300)
        seconds += took
        if not ok:
            return {"ok": False, "seconds": seconds, "detail": f"{log}: {last}"}
    from tandem.train.checkpoint import CheckpointDir, load

    finals = [load(CheckpointDir(runs / name / "checkpoints").existing()[-1][1]) for name in ("straight", "resumed")]
    a, b = (state["model"] for state in finals)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    same = not differ and finals[0]["step"] == finals[1]["step"] == 20
    detail = "parameters bitwise equal after 20 steps" if same else f"{len(differ)} tensors differ: {differ[:3]}"
    return {"ok": same, "seconds": seconds, "detail": detail}


def step_throughput(out: Path, device: str, quick: bool) -> dict:
    bench = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--device", device]
    if quick:
        jobs = {"all": ["--trainers", "classifier,dit", "--dit-sizes", "tiny", "--shapes", "digits", "--steps", "2"]}
        jobs["all"] += ["--warmup", "1", "--end-to-end", "--e2e-steps", "4"]
    else:
        jobs = {
            "classifier": ["--trainers", "classifier", "--shapes", "cifar", "--batch-size", "1024", "--compile"],
            "dit": ["--trainers", "dit", "--dit-sizes", "S,B", "--shapes", "cifar", "--batch-size", "256", "--compile"],
        }
        for args in jobs.values():
            args += ["--end-to-end", "--e2e-steps", "200"]
    rows, seconds, problems = [], 0.0, []
    for name, args in jobs.items():
        results = out / f"throughput-{name}.jsonl"
        ok, took, last = run([*bench, *args, "--out", str(results)], out / f"throughput-{name}.log", 420)
        seconds += took
        if not ok:
            problems.append(f"{name}: {last}")
        if results.exists():
            rows += [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    figures = [
        {k: r.get(k) for k in ("model", "shape", "batch_size", "compile", "img_per_s", "step_ms", "mfu", "error")}
        | {k: v for k, v in r.items() if k.startswith("e2e_")}
        for r in rows
    ]
    detail = "; ".join(
        f"{r['model']} {'x'.join(map(str, r['shape']))} b{r['batch_size']}: "
        + (
            r["error"]
            if r.get("error")
            else f"{r['img_per_s']:,.0f} img/s step, {r['e2e_img_per_s']:,.0f} end to end"
            + (f", MFU {r['mfu']:.1%}" if r.get("mfu") else "")
        )
        for r in figures
    )
    ok = not problems and bool(rows) and not any(r.get("error") for r in rows)
    return {"ok": ok, "seconds": seconds, "detail": "; ".join(problems) or detail, "results": figures}


def step_digits(out: Path, device: str, quick: bool) -> dict:
    runs = out / "digits-runs"
    args = ["train", "dit", "--dataset", "digits", "--device", device, "--runs-dir", str(runs), "--run-name", "dit"]
    args += [*QUICK_DIT, "--steps", "6", "--log-every", "2", "--sample-every", "0"] if quick else ["--steps", "600"]
    ok, seconds, last = run([*TANDEM, *args], out / "digits.log", 300)
    if not ok:
        return {"ok": False, "seconds": seconds, "detail": last}
    records = [json.loads(line) for line in (runs / "dit" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    rates = [r["img_per_s"] for r in losses[1:] or losses]  # the first window includes the warm-up
    figures = {"final_loss": losses[-1]["loss"], "img_per_s": sum(rates) / len(rates), "steps": losses[-1]["step"]}
    detail = f"{figures['steps']} steps in {seconds:.0f}s, {figures['img_per_s']:,.0f} img/s, final loss {figures['final_loss']:.4f}"
    return {"ok": True, "seconds": seconds, "detail": detail, **figures}


def step_compile(out: Path, device: str, quick: bool) -> dict:
    if quick:
        return {"ok": None, "seconds": 0.0, "detail": "skipped: --quick compiles nothing"}
    runs, seconds, compile_s = out / "compile-runs", 0.0, []
    for name in ("cold", "warm"):
        args = ["train", "dit", "--dataset", "digits", "--steps", "3", "--compile", "--sample-every", "0"]
        args += ["--runs-dir", str(runs), "--data-dir", str(out / "compile-data"), "--run-name", name]
        ok, took, last = run([*TANDEM, *args], out / f"compile-{name}.log", 600)
        seconds += took
        if not ok:
            return {"ok": False, "seconds": seconds, "detail": last}
        records = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
        compile_s.append(next(r["compile_s"] for r in records if "compile_s" in r))
    detail = f"first step {compile_s[0]:.1f}s cold, {compile_s[1]:.1f}s warm ({compile_s[1] / compile_s[0]:.0%})"
    return {"ok": True, "seconds": seconds, "detail": detail, "cold_s": compile_s[0], "warm_s": compile_s[1]}


def step_ddp(out: Path, device: str, quick: bool) -> dict:
    if device != "cuda" or torch.cuda.device_count() < 2:
        return {"ok": None, "seconds": 0.0, "detail": "skipped: fewer than 2 GPUs"}
    runs = out / "ddp-runs"
    args = ["train", "dit", "--dataset", "digits", "--steps", "100", "--batch-size", "128", "--runs-dir", str(runs)]
    ok, seconds, last = run(
        [*TANDEM, *args, "--gpus", "2", "--run-name", "ddp", "--sample-every", "0"], out / "ddp.log", 300
    )
    if not ok:
        return {"ok": False, "seconds": seconds, "detail": last}
    record = json.loads((runs / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    same = record.get("ranks_identical")
    return {"ok": bool(same), "seconds": seconds, "detail": f"2 ranks (NCCL), weights identical: {same}"}


STEPS = {
    "tandem check twice": step_check,
    "bitwise resume": step_resume,
    "throughput": step_throughput,
    "digits DiT run": step_digits,
    "compile start": step_compile,
    "2-rank DDP": step_ddp,
}


def markdown(report: dict) -> str:
    lines = [
        f"GPU benchmark, {report['date']}: {report['device_name']} ({report['device']}), torch {report['torch']}"
        + (" (--quick)" if report["quick"] else ""),
        "",
        "| step | result | seconds | figures |",
        "|---|---|---:|---|",
    ]
    for name, r in report["steps"].items():
        verdict = "skipped" if r["ok"] is None else "pass" if r["ok"] else "FAIL"
        lines.append(f"| {name} | {verdict} | {r['seconds']:.0f} | {r['detail']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", required=True, help="folder for gpu.json, gpu.md and each step's log")
    parser.add_argument("--quick", action="store_true", help="on the CPU, tiny sizes, no compile (CI)")
    args = parser.parse_args(argv)
    device = "cpu" if args.quick else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; pass --quick to run the CPU version")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS in every child
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "gpus": torch.cuda.device_count() if device == "cuda" else 0,
        "torch": torch.__version__,
        "quick": args.quick,
        "steps": {},
    }
    started = time.perf_counter()
    for name, step in STEPS.items():
        print(f"{name} ...", flush=True)
        try:
            report["steps"][name] = step(out, device, args.quick)
        except Exception as exc:  # a broken step is a result too; the others still run
            report["steps"][name] = {"ok": False, "seconds": 0.0, "detail": f"{type(exc).__name__}: {exc}"[:200]}
        print(f"  {report['steps'][name]['detail']}", flush=True)
    report["seconds"] = time.perf_counter() - started
    (out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / "gpu.md").write_text(table + "\n")
    print(f"\n{table}\n\ntotal {report['seconds']:.0f}s; results: {out / 'gpu.json'}, {out / 'gpu.md'}")
    return 0 if all(r["ok"] is not False for r in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
