"""Which training images each rank sees at each step: a pure function of (seed, step, rank).

The data order of epoch e is a permutation drawn from a generator seeded by (seed, e) alone, so any
rank, and any resumed run, can recompute it without saved state. Each global batch is cut into
world_size contiguous slices; rank r trains on slice r. Incomplete last batches are dropped.

The permutation is drawn on the CPU (the same order on every device) once per epoch and moved to the
device the images live on, so a step's indices are a slice of a device tensor: no copy, no host sync.
"""

from __future__ import annotations

import torch

from tandem.train.device import derive_seed


class BatchPlan:
    def __init__(
        self,
        num_images: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ):
        self.num_images, self.batch_size, self.seed, self.device = num_images, batch_size, seed, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_images // batch_size
        self._epoch, self._order = -1, None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
        return torch.randperm(self.num_images, generator=generator)

    def indices(self, step: int) -> torch.Tensor:
        """This rank's indices (on the plan's device) for optimizer step `step` (0-based, counted over epochs)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self.epoch_order(epoch).to(self.device, non_blocking=True)
        batch = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        per_rank = self.batch_size // self.world_size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]
