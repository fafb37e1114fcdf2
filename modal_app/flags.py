"""The entrypoint's words: a command, the few flags that choose where and on what it runs, and the rest,
which tandem's own parser reads (`tandem train <kind> ...`, `tandem sample ...`), so every trainer and
sampler flag means here exactly what it means there."""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass

from tandem.cli import build_parser as tandem_parser
from tandem.errors import UsageError
from tandem.train.config import CONFIGS
from tandem.train.flags import config_from_args, sources

from . import resources

PROG = "modal_app/train.py"
DEFAULT_COMMAND = "dit"  # `modal run modal_app/train.py [--steps N]` trains the DiT
COMMANDS = (*CONFIGS, "sample", "check", "fetch", "runs")


class Parser(argparse.ArgumentParser):
    """Bad words end in one line (UsageError, exit 2) instead of argparse's usage block."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str):
        raise UsageError(message)


@dataclass
class Request:
    command: str
    target: argparse.Namespace  # gpu, gpus, nodes, rdma, timeout, local, detach, outputs (those the command takes)
    tandem: argparse.Namespace | None = None  # tandem's own parse of the rest (train kinds and sample)
    run: str = ""  # fetch: the run's name

    def config(self):
        """The training config, built as `tandem train <kind>` builds it from the same words."""
        return config_from_args(CONFIGS[self.command], self.tandem)

    def given(self) -> dict[str, str]:
        """The config fields the words set (only these may differ from a continued run's record), and where
        each came from (a flag, a --config file)."""
        return sources(self.tandem)


def build_parser(settings) -> Parser:
    parser = Parser(
        prog=PROG,
        allow_abbrev=False,  # --out (tandem sample's) must not pass for --outputs
        description="tandem's trainers, sampler and check on Modal (or here: --local, or when not logged in to "
        "Modal). classifier and dit take the flags of `tandem train`, sample those of `tandem sample`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    trains = []
    for kind, cls in CONFIGS.items():
        train = commands.add_parser(
            kind, help=f"tandem train {kind}: {cls.__doc__.splitlines()[0]}", add_help=False, allow_abbrev=False
        )
        target_arguments(train, settings, resources.TRAIN_TIMEOUT, train=True)
        trains.append((kind, train))
    sample = commands.add_parser(
        "sample", help="tandem sample: a grid from a DiT run (on Modal, --run names a run in the runs Volume)",
        add_help=False, allow_abbrev=False,
    )  # fmt: skip
    target_arguments(sample, settings, resources.SHORT_TIMEOUT, train=False)
    check = commands.add_parser(
        "check", help="tandem check: this target's fingerprint, saved under --outputs/fingerprints/", allow_abbrev=False
    )
    target_arguments(check, settings, resources.SHORT_TIMEOUT, train=False, help=False)
    fetch = commands.add_parser(
        "fetch", help="copy a run's config, metrics, loss curve and samples from the runs Volume to --outputs/<run>/",
        allow_abbrev=False,
    )  # fmt: skip
    fetch.add_argument("run", help="a run of the runs Volume: its name, a unique prefix of it, latest or latest:<kind>")
    fetch.add_argument("--local", action="store_true", help="from this machine's runs dir instead")
    fetch.add_argument("--outputs", default="outputs", help="local folder the files are copied to")
    runs = commands.add_parser(
        "runs", help="list the runs of the runs Volume, the most recently written first (as `tandem runs`)",
        allow_abbrev=False,
    )  # fmt: skip
    runs.add_argument("--kind", choices=CONFIGS, help="only runs of this kind")
    runs.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    runs.add_argument("--local", action="store_true", help="this machine's runs dir instead")
    parser.commands = {"sample": sample, "check": check, "fetch": fetch, "runs": runs} | {
        kind: train for kind, train in trains
    }
    return parser


def target_arguments(parser, settings, timeout: int, train: bool, help: bool = True) -> None:
    group = parser.add_argument_group("target (where it runs)")
    if help:  # our part of the help, then tandem's (see parse)
        group.add_argument("-h", "--help", action="store_true", help="show these flags and the command's own")
    group.add_argument("--gpu", default=settings.modal_gpu, help=f"Modal GPU type: {', '.join(resources.GPU_TYPES)}")
    if train:
        group.add_argument(
            "--gpus", type=int, default=1, help="GPUs in the container; more than one trains with DDP through torchrun"
        )
        group.add_argument(
            "--nodes",
            type=int,
            default=1,
            help=f"containers of --gpus GPUs each, as one Modal cluster (sizes {', '.join(map(str, resources.CLUSTER_SIZES))}; "
            f"{', '.join(resources.CLUSTER_GPU_TYPES)} with all GPUs of the host)",
        )
        group.add_argument(
            "--rdma",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="with --nodes: RDMA between the nodes (--no-rdma: the private IP network only)",
        )
        group.add_argument(
            "--detach", action="store_true", help="start the run on Modal and return (under `modal run`: its --detach)"
        )
    group.add_argument(
        "--timeout",
        type=int,
        default=timeout,
        help=f"seconds per call (default {timeout}, at most {resources.MAX_TIMEOUT})",
    )
    group.add_argument("--local", action="store_true", help="run here (local GPU, else CPU) instead of on Modal")
    group.add_argument(
        "--outputs", default="outputs", help="local folder the run's metrics, loss curve and samples are copied to"
    )
    parser.set_defaults(gpus=1, nodes=1, rdma=True, detach=False)


def parse(argv: list[str], settings) -> Request:
    """The request these words make; `-h` prints the help and exits as argparse does."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [DEFAULT_COMMAND, *argv]
    parser = build_parser(settings)
    target, rest = parser.parse_known_args(argv)
    command = target.command
    if command in ("check", "fetch", "runs"):
        if rest:
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        return Request(command, target, run=getattr(target, "run", ""))
    words = ["train", command, *rest] if command in CONFIGS else ["sample", *rest]
    if target.help:  # ours, then tandem's own (which exits as argparse's -h does)
        print(parser.commands[command].format_help())
        tandem_parser().parse_args([*words[: 2 if command in CONFIGS else 1], "--help"])
    theirs, unknown = tandem_parse(words)
    if unknown:
        raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see `{PROG} {command} --help`)")
    if command in CONFIGS and (theirs.node_rank or theirs.master_addr):
        raise UsageError(
            "--node-rank and --master-addr are Modal's to choose: each node of a cluster gets its own; drop them"
        )
    return Request(command, target, tandem=theirs)


def tandem_parse(words: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """tandem's parser on `words`; its complaint (argparse prints usage, then one error line) as one line."""
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            return tandem_parser().parse_known_args(words)
    except SystemExit:
        raise UsageError(complaint.getvalue().strip().splitlines()[-1].split(": error: ", 1)[-1]) from None
