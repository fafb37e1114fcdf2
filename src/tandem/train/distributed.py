"""Training over several processes with PyTorch's own engine: launched by torchrun (one machine or
several: tandem.train.launch builds its command), DistributedDataParallel.

torchrun starts one process per device and sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE /
GROUP_RANK; without them this is a single process and every helper here is a no-op. Backends: nccl on
CUDA, gloo on CPU.

Determinism: every rank computes the same global order of the data from (seed, epoch) alone and takes
its own contiguous slice of each global batch (see `tandem.train.batches`); each rank draws its
augmentation and noise from generators seeded by (seed, global rank). DDP averages the gradients, so all
ranks apply the same update and hold identical parameters; a run is reproducible for a given world size,
however its ranks are spread over nodes (2 nodes x 1 rank trains as 1 node x 2 ranks).
Only global rank 0 reads and writes the run directory and prints progress; the other ranks get the
attempt's config and checkpoint from it over the process group, so nodes need no shared run disk.

A lost peer (a node gone, a rank killed) ends every rank within COLLECTIVE_TIMEOUT at most: gloo notices
a closed connection at once, NCCL's watchdog aborts a collective that waited that long.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tandem.errors import UsageError

TIMEOUT_VARIABLE = "TANDEM_COLLECTIVE_TIMEOUT"
COLLECTIVE_TIMEOUT = 600.0  # seconds a collective may wait for a peer before every rank gives up


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # ranks on this node
    node_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        return self.world_size // self.local_world_size

    def describe(self) -> str:
        """ "2 nodes x 4 ranks" or "2 ranks"."""
        ranks = f"{self.local_world_size} rank{'s' if self.local_world_size > 1 else ''}"
        return f"{self.nodes} nodes x {ranks}" if self.nodes > 1 else ranks


def from_environment() -> Distributed:
    """The rank layout torchrun set up, or a single process."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")
    given = {name: os.environ.get(name) for name in names}
    given["LOCAL_WORLD_SIZE"] = given["LOCAL_WORLD_SIZE"] or given["WORLD_SIZE"]  # a launcher of one node
    try:
        rank, world, local, per_node, node = (
            int(given[name] or default) for name, default in zip(names, "01010", strict=True)
        )
    except ValueError:
        raise UsageError(f"{' / '.join(names)} must be integers; launch with torchrun") from None
    if per_node < 1 or world % per_node:
        raise UsageError(
            f"WORLD_SIZE {world} is not a multiple of LOCAL_WORLD_SIZE {per_node}: every node must run as many "
            "ranks (the same --gpus, or torchrun --nproc-per-node, on each)"
        )
    return Distributed(rank=rank, world_size=world, local_rank=local, local_world_size=per_node, node_rank=node)


def collective_timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else COLLECTIVE_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UsageError(f"{TIMEOUT_VARIABLE}={text!r}: give the seconds a collective may wait, e.g. 600")
    return datetime.timedelta(seconds=seconds)


def init(layout: Distributed, device: torch.device) -> None:
    if not layout.enabled or dist.is_initialized():
        return
    timeout = collective_timeout()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, layout: Distributed, device: torch.device) -> torch.nn.Module:
    """DDP wrapper (broadcasts rank 0's parameters and buffers, then averages gradients)."""
    if not layout.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on any: keeps decisions such as stopping collective."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def min_all(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor.item()


def sum_all(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(obj) -> list:
    """Every rank's `obj`, in rank order (on every rank)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def from_main(obj):
    """Rank 0's `obj` on every rank (the others pass None): a checkpoint rank 0 read, a plan it made."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def first_where(first: bool, work: Callable[[], object]):
    """`work()` on the ranks where `first` holds, before any other rank runs it; a UsageError on any of
    them is raised on every rank. Returns the result where it ran, else None (the caller runs it then)."""
    result, problem = None, None
    if first:
        try:
            result = work()
        except UsageError as exc:
            problem = str(exc)
    problems = [p for p in gather(problem) if p]
    if problems:
        raise UsageError(problems[0])
    return result
