"""The `tandem` command. Each area registers its own subcommands; this module only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

from tandem.errors import UsageError

# Modules exposing `register(subparsers)`; each subcommand sets `func(args) -> int`.
COMMAND_MODULES = (
    "tandem.env.commands",
    "tandem.train.commands",
    "tandem.check.commands",
    "tandem.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="One pinned environment; the same trainers locally, in Docker and on Modal.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"tandem {args.command}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code


if __name__ == "__main__":
    sys.exit(main())
