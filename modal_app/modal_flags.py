"""The Modal entrypoint's flags: those of `tandem train <kind>` (generated from the same config dataclasses)
and `tandem sample` (its own parser), plus the few that choose where and on what they run."""

from __future__ import annotations

import argparse

from tandem.cli import build_parser as tandem_parser
from tandem.train.config import CONFIGS, add_config_arguments

# The flags this entrypoint adds to tandem's own: where the work runs, never how it trains.
TARGET_FLAGS = ("--gpu", "--gpus", "--timeout", "--local", "--outputs")
MAX_GPUS = 8  # per container on Modal
MAX_TIMEOUT = 24 * 60 * 60  # Modal's limit per attempt


def subparser(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    """The parser of a subcommand, e.g. subparser(tandem_parser(), "train", "dit")."""
    for name in path:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[name]
    return parser


def build_parser(default_gpu: str, train_timeout: int, short_timeout: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modal run modal_app/train.py",
        description="tandem's trainers, sampler and check on Modal (or here: --local, or when not logged in "
        "to Modal). Same flags as `tandem train` / `tandem sample`, plus " + ", ".join(TARGET_FLAGS) + ".",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for kind, cls in CONFIGS.items():
        train = commands.add_parser(
            kind,
            help=f"tandem train {kind}: {cls.__doc__.splitlines()[0]}",
            description=cls.__doc__,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        add_config_arguments(train, cls)
        add_target_arguments(train, default_gpu, train_timeout)

    sample = commands.add_parser(
        "sample",
        parents=[subparser(tandem_parser(), "sample")],
        add_help=False,  # the parent's -h comes along
        help="tandem sample: a grid from a DiT run (on Modal: --run names a run in the runs Volume)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_target_arguments(sample, default_gpu, short_timeout, multi_gpu=False)

    check = commands.add_parser(
        "check",
        help="tandem check: this target's fingerprint, saved under --outputs/fingerprints/",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_target_arguments(check, default_gpu, short_timeout, multi_gpu=False)
    return parser


def add_target_arguments(parser, default_gpu: str, timeout: int, multi_gpu: bool = True) -> None:
    group = parser.add_argument_group("target (where it runs)")
    group.add_argument(
        "--gpu", default=default_gpu, help="Modal GPU type, e.g. T4, L4, A10G, A100-80GB, H100, H200, B200"
    )
    if multi_gpu:
        group.add_argument(
            "--gpus",
            type=int,
            default=1,
            help=f"GPUs in the container (1-{MAX_GPUS}); more than one trains with DDP through torchrun",
        )
    else:
        parser.set_defaults(gpus=1)
    group.add_argument(
        "--timeout", type=int, default=timeout, help=f"seconds per attempt before Modal stops it (max {MAX_TIMEOUT})"
    )
    group.add_argument(
        "--local", action="store_true", help="run here (local GPU, else CPU) instead of on Modal, as when not logged in"
    )
    group.add_argument(
        "--outputs", default="outputs", help="local folder the run's metrics, loss curve and samples are copied to"
    )


def tandem_train_flags(kind: str) -> set[str]:
    """The option strings `tandem train <kind>` accepts (to compare with this entrypoint's)."""
    return option_strings(subparser(tandem_parser(), "train", kind))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}
