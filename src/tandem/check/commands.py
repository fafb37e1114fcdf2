"""`tandem check`: write this environment's fingerprint, or compare several."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from tandem.errors import UsageError
from tandem.files import check_writable

# A label names the fingerprint in reports and, by default, its file in <runs dir>/fingerprints/.
LABEL = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"


def register(subparsers: argparse._SubParsersAction) -> None:
    text = "Write this environment's behaviour fingerprint (JSON), or compare fingerprints with --compare."
    parser = subparsers.add_parser("check", help=text, description=text)
    parser.add_argument(
        "--label",
        default="",
        help="name of this environment in reports and of its file: letters, digits, '.', '_', '-' "
        "(default: local, or image inside one)",
    )
    parser.add_argument(
        "--out",
        default="",
        help="where to write the JSON, in a folder that exists (default: <runs dir>/fingerprints/<label>.json)",
    )
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU section even when a GPU is present")
    parser.add_argument(
        "--compare", nargs="+", metavar="JSON", help="compare two or more fingerprints; exit 1 on any mismatch"
    )
    parser.add_argument("--all", action="store_true", help="with --compare: list matching fields too")
    parser.set_defaults(func=check_command)


def check_command(args) -> int:
    if args.compare:
        return compare_command(args.compare, show_all=args.all)
    from tandem.check.fingerprint import collect_fingerprint, write_fingerprint
    from tandem.train.config import default_runs_dir

    label = args.label or ("image" if os.environ.get("TANDEM_ENV_DIGEST") else "local")
    if not re.fullmatch(LABEL, label):
        raise UsageError(
            f"--label {label!r} is not a plain name (letters, digits, '.', '_', '-', not starting with '.'); "
            "pick one such as 'docker', or write elsewhere with --out"
        )
    # The default place is made when missing; a folder named by --out must exist.
    out = Path(args.out or Path(default_runs_dir()) / "fingerprints" / f"{label}.json")
    check_writable(out, parents=not args.out)  # before the minutes of collecting
    fingerprint = collect_fingerprint(label=label, gpu=not args.no_gpu)
    if fingerprint["environment"]["distributed"]["world_size"] > 1 and os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun every rank checks itself; global rank 0 writes the file
    write_fingerprint(fingerprint, out, parents=not args.out)
    print(summary(fingerprint, out))
    return 0


def summary(fingerprint: dict, path: Path) -> str:
    """What a fingerprint holds, in a few lines (the JSON has every field)."""
    env = fingerprint["environment"]
    device, packages = env["device"], env["distributions"]
    off = sorted(name for name, p in packages["locked"].items() if not p["matches_lock"])
    extra = sorted(packages["not_in_lock"])
    lock = f"{len(packages['locked']) - len(off)} of {len(packages['locked'])} locked packages as locked"
    lock += f"; differ: {', '.join(off)}" if off else ""
    lock += f"; {len(extra)} installed outside the lock" if extra else ""
    lines = [
        f"fingerprint {fingerprint['label']!r} written to {path}",
        f"  {'environment':<14}  Python {env['python']} ({env['platform']}), torch {device['torch']}, "
        f"source {env['source_sha256'][7:19]}",
        f"  {'packages':<14}  {lock}",
    ]
    for section in ("cpu", "gpu"):
        behaviour = fingerprint[section]
        if behaviour is None:
            why = "skipped (--no-gpu)" if device["gpu"] else "none: no CUDA device"
            lines.append(f"  {section:<14}  {why}")
            continue
        where = behaviour.get("name", env["cpu"])
        for kind in ("classifier", "dit"):
            losses = behaviour[kind]["losses"]
            lines.append(
                f"  {section + ' ' + kind:<14}  {len(losses)} steps on {where}: loss {losses[0]:.4f} -> "
                f"{losses[-1]:.4f}, params {behaviour[kind]['params_sha256'][7:19]}"
            )
    lines.append("compare it with another environment's: tandem check --compare A.json B.json")
    return "\n".join(lines)


def compare_command(paths: list[str], show_all: bool = False) -> int:
    from tandem.check.compare import compare_fingerprints, fingerprint_problem, format_rows

    if len(paths) < 2:
        raise UsageError("--compare needs at least two fingerprint files")
    fingerprints = []
    for path in paths:
        try:
            fingerprint = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not text at all
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise UsageError(f"{path}: not a readable fingerprint ({reason}); write one with `tandem check`") from None
        if problem := fingerprint_problem(fingerprint):
            raise UsageError(f"{path}: not a tandem fingerprint ({problem}); write one with `tandem check`")
        fingerprints.append(fingerprint)
    labels = [fp.get("label") or Path(p).stem for fp, p in zip(fingerprints, paths, strict=True)]
    rows = compare_fingerprints(fingerprints)
    bad = [row for row in rows if not row.ok]
    print(format_rows(rows, labels, only_mismatches=not show_all and bool(bad)))
    if bad:
        print(f"\n{len(bad)} of {len(rows)} fields differ: {', '.join(r.field for r in bad[:8])}")
        return 1
    print(f"\nall {len(rows)} fields match across {', '.join(labels)}")
    return 0
