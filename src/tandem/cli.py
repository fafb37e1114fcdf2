"""The `tandem` command. Each area registers its own subcommands; this module only dispatches.

Building the parser imports no torch: `tandem --help` and every `--help` answer at once, and each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from tandem.errors import UsageError

# Modules exposing `register(subparsers)`; each subcommand sets `func(args) -> int`.
COMMAND_MODULES = (
    "tandem.env.commands",
    "tandem.train.commands",
    "tandem.check.commands",
    "tandem.doctor",
)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless there is none (None, "") or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default == "" or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tandem")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="One pinned environment; the same trainers locally, in Docker and on Modal.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"tandem {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for each in parsers(parser):  # a flag is spelled out: `--step 5` must not pass for --steps
        each.allow_abbrev = False
    return parser


def parsers(parser: argparse.ArgumentParser):
    """`parser` and every subcommand's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that `args` came through (e.g. that of `tandem train dit`)."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, sub.dest, None) not in sub.choices:
            return parser
        parser = sub.choices[getattr(args, sub.dest)]


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like parser.parse_args, but an unknown flag is reported with its subcommand's usage, not the
    top-level one, and with the closest flag it knows."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = command_parser(parser, args)
        known = [flag for action in command._actions for flag in action.option_strings]
        guess = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"tandem {args.command}: error: {exc}", file=sys.stderr)
        return UsageError.exit_code
    except BrokenPipeError:  # the reader went away (`tandem runs | head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit, too
        return 1


if __name__ == "__main__":
    sys.exit(main())
