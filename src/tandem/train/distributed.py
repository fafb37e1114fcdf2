"""Multi-GPU training with PyTorch's own engine: launched by torchrun, DistributedDataParallel.

torchrun starts one process per device and sets RANK / WORLD_SIZE / LOCAL_RANK; without them this is a
single process and every helper here is a no-op. Backends: nccl on CUDA, gloo on CPU.

Determinism: every rank computes the same global order of the data from (seed, epoch) alone and takes
its own contiguous slice of each global batch (see `tandem.train.batches`); each rank draws its
augmentation and noise from generators seeded by (seed, rank). DDP averages the gradients, so all ranks
apply the same update and hold identical parameters; a run is reproducible for a given world size.
Only rank 0 writes files and prints progress. Checkpoints hold every rank's random state, so a run
resumes with the same world size exactly where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tandem.errors import UsageError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Distributed:
    """The rank layout torchrun set up, or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise UsageError("RANK / WORLD_SIZE / LOCAL_RANK must be integers; launch with torchrun") from None
    return Distributed(rank=rank, world_size=world, local_rank=local)


def init(layout: Distributed, device: torch.device) -> None:
    if not layout.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


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
