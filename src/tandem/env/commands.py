"""`tandem lock`, `tandem pin-base`, `tandem render` and `tandem parity`: keep the generated environment in step."""

from __future__ import annotations

import argparse
import sys

from tandem.env.lockfile import compile_locks, read_lock, stale_locks
from tandem.env.render import generated_files, staleness_diff, write_generated
from tandem.env.settings import load_project


def register(subparsers: argparse._SubParsersAction) -> None:
    lock = _add(subparsers, "lock", "Re-compile requirements-modal.txt (and the dev lock) from pyproject.toml.")
    lock.add_argument("--check", action="store_true", help="Exit 1 if the locks are stale; write nothing.")
    lock.set_defaults(func=lock_command)

    pin = _add(
        subparsers,
        "pin-base",
        "Record the digest the base_image tag resolves to now as base_image_digest in pyproject.toml.",
    )
    pin.add_argument(
        "--from",
        dest="source",
        choices=("registry", "engine"),
        default="registry",
        help="where to read the tag: its registry (HTTP v2 API; no engine needed) or the local engine's pulled copy "
        "(default: registry)",
    )
    pin.add_argument(
        "--check",
        action="store_true",
        help="Exit 1 if no digest is recorded or the tag now resolves to another one; write nothing.",
    )
    pin.set_defaults(func=pin_base_command)

    render_ = _add(
        subparsers, "render", "Write docker/Dockerfile and compose.yaml from the settings block and the lock."
    )
    render_.add_argument(
        "--check", action="store_true", help="Exit 1 with a unified diff if a generated file is stale; write nothing."
    )
    render_.set_defaults(func=render_command)

    parity = _add(subparsers, "parity", "Compare docker/Dockerfile with the Modal image, field by field.")
    parity.set_defaults(func=parity_command)


def _add(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--project",
        metavar="DIR",
        default=None,
        help="Project root (default: the nearest directory at or above this one with [tool.tandem.image] in pyproject.toml).",
    )
    return parser


def lock_command(args) -> int:
    project = load_project(args.project)
    if args.check:
        stale = stale_locks(project.root, project.settings.python)
        if stale:
            print(f"stale: {', '.join(stale)} no longer match pyproject.toml; run `tandem lock`")
            return 1
        print("locks are fresh")
        return 0
    for path in compile_locks(project.root, project.settings.python):
        print(f"wrote {path.relative_to(project.root)} ({len(read_lock(path))} pins)")
    print("now run `tandem render` so docker/Dockerfile picks up the new lock")
    return 0


def pin_base_command(args) -> int:
    from tandem.env.base_image import resolve, write_base_digest

    project = load_project(args.project)
    s = project.settings
    recorded = s.base_image_digest
    if args.check and not recorded:
        print(
            f"not pinned: base_image_digest is empty, so both images take whatever {s.base_image} names; run `tandem pin-base`"
        )
        return 1
    now = resolve(s.base_image, args.source, recorded)
    if args.check:
        if now.digest != recorded:
            print(
                f"{s.base_image} now resolves to {now.digest} in {now.source}, but pyproject.toml pins {recorded}; "
                "run `tandem pin-base` to move the pin"
            )
            return 1
        print(f"pinned: {s.base_image} still resolves to {recorded} in {now.source}")
        return 0
    if not write_base_digest(project.pyproject_path, now.digest):
        print(f"already pinned: {s.base_image}@{now.digest} ({now.source}); nothing written")
        return 0
    print(f'wrote base_image_digest = "{now.digest}" to pyproject.toml ({s.base_image} in {now.source})')
    print("now run `tandem render` so docker/Dockerfile and compose.yaml pull the pinned base")
    return 0


def render_command(args) -> int:
    project = load_project(args.project)
    if args.check:
        diff = staleness_diff(project)
        if diff:
            sys.stdout.write(diff)
            files = generated_files(project).items()
            stale = ", ".join(
                str(p.relative_to(project.root)) for p, text in files if not p.is_file() or p.read_text() != text
            )
            print(f"stale in {project.root}: {stale}; run `tandem render` and commit the result", file=sys.stderr)
            return 1
        print(
            "generated files are fresh: "
            + ", ".join(str(p.relative_to(project.root)) for p in generated_files(project))
        )
        return 0
    for path in write_generated(project):
        print(f"wrote {path.relative_to(project.root)}")
    return 0


def parity_command(args) -> int:
    from tandem.env.parity import format_report, parity_rows

    project = load_project(args.project)
    rows = parity_rows(project)
    print(format_report(rows))
    mismatched = [row.field for row in rows if not row.match]
    if mismatched:
        print(f"\nparity FAILED on: {', '.join(mismatched)}", file=sys.stderr)
        return 1
    accepted = sum(row.reason is not None for row in rows)
    print(f"\nparity ok: {len(rows) - accepted} fields match, {accepted} differ as accepted")
    for row in rows:
        if row.note:
            print(f"note: {row.field} {row.note}")
    return 0
