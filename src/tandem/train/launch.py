"""Where a training run's processes start: one process, several on this machine, or several machines.

`tandem train ... --gpus G --nodes N --node-rank R --master-addr HOST[:PORT]` hands the same training
command to torchrun (`torch.distributed.run`), which starts G ranks on each of N nodes; the Modal target
builds its torchrun command here too. Node 0 hosts the rendezvous (torchrun's static rendezvous on a
c10d TCPStore at HOST:PORT), so each node's --node-rank fixes its global ranks: global rank 0, the run's
one writer, is always on node 0. A process that torchrun already started (RANK in the environment) is
never launched again: `torchrun ... -m tandem train ...` keeps working as it did.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import dataclass

from tandem.errors import UsageError

DEFAULT_PORT = 29500
MAX_NODES = 1024
MAX_GPUS = 64  # ranks per node


@dataclass(frozen=True)
class Launch:
    gpus: int = 1  # ranks per node
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = ""  # node 0's address, as other nodes reach it
    master_port: int = DEFAULT_PORT

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes

    def torchrun(self, command: list[str]) -> list[str]:
        """`python -m torch.distributed.run ... <command>` (command: what follows `python`, e.g. ["-m",
        "tandem", "train", "dit", ...]); the command itself when there is one process."""
        if self.world_size == 1:
            return [sys.executable, *command]
        if self.nodes == 1:
            where = ["--standalone"]
        else:
            where = ["--nnodes", str(self.nodes), "--node-rank", str(self.node_rank),
                     "--master-addr", self.master_addr, "--master-port", str(self.master_port)]  # fmt: skip
        return [sys.executable, "-m", "torch.distributed.run", *where, "--nproc-per-node", str(self.gpus), *command]

    def flags(self) -> list[str]:
        """The flags of `tandem train` that give this launch (for a command to paste)."""
        words = ["--gpus", str(self.gpus)] if self.gpus > 1 else []
        if self.nodes > 1:
            words += ["--nodes", str(self.nodes), "--node-rank", str(self.node_rank)]
            words += ["--master-addr", join_address(self.master_addr, self.master_port)]
        return words


def launch_of(gpus: int, nodes: int, node_rank: int, master: str) -> Launch:
    """A checked Launch from the flags; one line naming the flag and the fix otherwise."""
    if not 1 <= gpus <= MAX_GPUS:
        raise UsageError(f"--gpus {gpus}: give the ranks to start on this node, 1 to {MAX_GPUS}")
    if not 1 <= nodes <= MAX_NODES:
        raise UsageError(f"--nodes {nodes}: give the number of machines, 1 to {MAX_NODES}")
    if nodes == 1:
        if node_rank or master:
            raise UsageError("--node-rank and --master-addr belong to a run over several machines; add --nodes N")
        return Launch(gpus=gpus)
    if not 0 <= node_rank < nodes:
        raise UsageError(
            f"--node-rank {node_rank}: with --nodes {nodes} it is 0 to {nodes - 1}, a different one per node"
        )
    if not master:
        raise UsageError(
            f"--nodes {nodes} needs --master-addr HOST[:PORT]: the address of node 0 as the other nodes reach it "
            f"(the port defaults to {DEFAULT_PORT})"
        )
    host, port = split_address(master)
    return Launch(gpus=gpus, nodes=nodes, node_rank=node_rank, master_addr=host, master_port=port)


def split_address(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, a bare IPv6 address or [ADDR]:PORT -> (host, port)."""
    value = text.strip()
    host, port, ok = value, str(DEFAULT_PORT), True
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            ok, port = rest.startswith(":"), rest[1:]
    elif value.count(":") == 1:  # several colons: a bare IPv6 address
        host, port = value.split(":")
    if not (ok and host and not any(c.isspace() for c in host) and port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"--master-addr {text!r}: give node 0's HOST or HOST:PORT ([ADDR]:PORT for IPv6)")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    try:
        bracket = ipaddress.ip_address(host).version == 6
    except ValueError:
        bracket = False
    return f"[{host}]:{port}" if bracket else f"{host}:{port}"


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "launch (how many processes, on how many machines; the run's settings do not change with them)"
    )
    group.add_argument(
        "--gpus", type=int, default=1, metavar="G", help="ranks on this node (one per GPU); >1 starts torchrun"
    )
    group.add_argument(
        "--nodes", type=int, default=1, metavar="N", help="machines the run spans; run the same command on each"
    )
    group.add_argument(
        "--node-rank",
        type=int,
        default=0,
        metavar="R",
        help="this machine's place, 0 to N-1 (0 hosts the rendezvous and writes the run)",
    )
    group.add_argument("--master-addr", default="", metavar="HOST[:PORT]", help=f"node 0's address as the others reach it (port {DEFAULT_PORT} by default)")  # fmt: skip


def launch_from_args(args: argparse.Namespace) -> Launch:
    return launch_of(args.gpus, args.nodes, args.node_rank, args.master_addr)


def started_by_torchrun() -> bool:
    return "RANK" in os.environ and "LOCAL_RANK" in os.environ
