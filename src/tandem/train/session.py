"""What a trainer's process holds for its life: the device and the ranks, the run it writes (a
tandem.train.run_writer.RunWriter, claimed before anything else is read), the data, and the seeded random
streams.

    with Session(kind, config, given) as s:   # device, ranks, the run claimed, data, generators
        ... build the model, s.run.begin(...), tandem.train.loop.train_loop(s, ...), s.run.finish(...)

Every method that may talk to other ranks is called by all ranks at the same step.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection

import torch
from tqdm import tqdm

from tandem.data import ImageData, load_dataset
from tandem.errors import UsageError
from tandem.train import distributed, memory
from tandem.train.checkpoint import restore_rng
from tandem.train.compile_cache import use_compile_cache
from tandem.train.config import TrainConfig, resolve_for_device
from tandem.train.device import choose_device, configure_determinism, derive_seed, seed_everything
from tandem.train.flags import CHOSEN, flag_text
from tandem.train.run_writer import RunWriter
from tandem.train.validate import check_cpu_threads, validate


class Session:
    def __init__(self, kind: str, config: TrainConfig, given: Collection[str] | None = None):
        """`given`: the settings the user set (flags, a --config file's keys); None: all of `config`'s."""
        validate(config)
        self.kind = kind
        self.layout = distributed.from_environment()
        self.is_main = self.layout.is_main
        self._threads = torch.get_num_threads()
        self.run = RunWriter(kind, self.layout, self.print)
        self.device, why = choose_device(config.device, self.layout.local_rank)
        try:
            distributed.init(self.layout, self.device)
            started_on = config.device
            config = self.run.claim(config, given)  # a resumed run trains what its record says
            if config.device != started_on:
                self.device, why = self._move(config.device)
            self.config = self._start(config, why)
        except BaseException:
            self.close()  # no lock, process group or thread setting outlives a failed start
            raise

    def _start(self, c: TrainConfig, why: str) -> TrainConfig:
        """Device, threads and determinism of the attempt's settings, the data, and the settings left to the
        device; returns the config the trainer trains."""
        if c.batch_size % self.layout.world_size:
            raise UsageError(
                f"--batch-size {c.batch_size} does not split evenly over {self.layout.world_size} ranks; "
                "pick a multiple of the number of processes"
            )
        check_cpu_threads(c.cpu_threads)  # here: the machine that trains, which a launcher may not be
        configure_determinism(c.deterministic)
        if self.device.type == "cpu" and c.cpu_threads:
            torch.set_num_threads(c.cpu_threads)
        ranks = f"; rank 0 of {self.layout.describe()}" if self.layout.enabled else ""
        self.print(f"device: {self.device} ({why}{ranks})")
        if self.layout.local_rank == 0 and not self.is_main:  # each other node says it joined, once
            first = self.layout.node_rank * self.layout.local_world_size
            print(
                f"node {self.layout.node_rank} of {self.layout.nodes}: ranks {first}-{first + self.layout.local_world_size - 1} "
                f"on {self.device.type}, training with node 0, which writes the run",
                flush=True,
            )
        self.stale_image_warning()
        if c.image_size:  # before the resize that would not fit; the batch the device would choose at most
            batch = resolve_for_device(self.kind, c, self.device.type, self.layout.world_size)[0].batch_size
            needed = memory.image_size_bytes(c.image_size, batch, getattr(c, "patch_size", 0))
            memory.require_fits(needed, self.device, f"--image-size {c.image_size}", "pass a smaller --image-size")
        self.data = self.load_data(c)
        self.validation_size = 0  # training images a trainer holds out (tandem.data.datasets.hold_out)
        c = self.choose_for_device(c)

        # The global generators get the same seed on every rank, so every rank builds the same initial
        # weights (the trainers build their model right after this); per-rank randomness comes from these:
        seed_everything(c.seed)
        self.generators = {  # augmentation and noise: separate streams, one per rank
            name: torch.Generator(self.device).manual_seed(derive_seed(c.seed, name, self.layout.rank))
            for name in ("data", "noise")
        }
        return c

    def _move(self, requested: str) -> tuple[torch.device, str]:
        """The run's recorded --device differs from the one this process started on."""
        device, why = choose_device(requested, self.layout.local_rank)
        if self.layout.enabled and device.type != self.device.type:
            raise UsageError(
                f"the run records --device {requested} but its ranks started on {self.device.type}; "
                f"pass --device {requested}"
            )
        return device, why

    def print(self, *args, **kwargs) -> None:
        if self.is_main:
            tqdm.write(" ".join(map(str, args)), **kwargs)

    def stale_image_warning(self) -> None:
        from tandem.check.environment import check_provenance
        from tandem.env.digest import stale_image_warning

        for warning in (stale_image_warning(), check_provenance()):
            if self.is_main and warning:
                print(warning, file=sys.stderr)

    def load_data(self, c: TrainConfig) -> ImageData:
        """Each node's first rank loads (and downloads) first; the node's other ranks then read its cached
        files. Nodes need no shared data disk."""

        def load() -> ImageData:
            return load_dataset(
                c.dataset, c.data_dir, image_size=c.image_size or None, folder=c.folder or None, seed=c.seed
            )

        data = distributed.first_where(self.layout.local_rank == 0, load)
        return (data or load()).to(self.device)

    def choose_for_device(self, c: TrainConfig) -> TrainConfig:
        """The settings left to the device (batch size, log interval, compile), now that the data's size is
        known; they are recorded in config.json with the rest."""
        c, chosen = resolve_for_device(
            self.kind, c, self.device.type, self.layout.world_size, len(self.data.train_images)
        )
        self.run.chosen.update(dict.fromkeys(chosen, f"{CHOSEN} the device ({self.device.type})"))
        if not c.image_size:
            c = dataclasses.replace(c, image_size=self.data.image_shape[-1])
            self.run.chosen["image_size"] = f"{CHOSEN} the dataset"
        if chosen:
            shown = ", ".join(flag_text(name, value) for name, value in chosen.items())
            self.print(f"chosen for {self.device.type}: {shown} (flags given override these)")
        if c.batch_size > len(self.data.train_images):
            raise UsageError(
                f"--batch-size {c.batch_size} is larger than the {len(self.data.train_images)} training images of "
                f"{c.dataset}; pass a smaller --batch-size"
            )
        return c

    def choose(self, by: str, **values) -> TrainConfig:
        """Settings left at 0 that the trainer fixes now (the model's shape): trained with, and recorded in
        config.json as "chosen by <by>". Returns the config."""
        self.config = dataclasses.replace(self.config, **values)
        self.run.chosen.update(dict.fromkeys(values, f"{CHOSEN} {by}"))
        return self.config

    @property
    def dataset_sizes(self) -> dict[str, int]:
        sizes = {"train": len(self.data.train_images), "test": len(self.data.test_images)}
        return sizes | ({"validation": self.validation_size} if self.validation_size else {})

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the step calls: DDP-wrapped on several ranks, compiled with --compile."""
        model = distributed.wrap(model, self.layout, self.device)
        if not self.config.compile:
            return model
        folder, warm = use_compile_cache(self.config.data_dir)
        self.print(f"torch.compile cache: {folder} ({'warm' if warm else 'cold: the first step compiles'})")
        return torch.compile(model)

    def restore(self, state: dict) -> None:
        """Put back this rank's random streams from a checkpoint."""
        if len(state["rng"]) == self.layout.world_size:
            restore_rng(state["rng"][self.layout.rank], self.generators)
        else:  # another world size: there is no saved stream for this rank; start fresh, reproducibly
            self.print(
                f"note: the checkpoint was written by {len(state['rng'])} ranks, this run has "
                f"{self.layout.world_size}; random streams restart from the seed"
            )
            for name, g in self.generators.items():
                g.manual_seed(derive_seed(self.config.seed, name, self.layout.rank, state["step"]))

    def begin(self, identity: dict, flags: dict[str, str], total_steps: int | None = None) -> dict | None:
        """The run's files written (tandem.train.run_writer.RunWriter.begin) with the config trained; the
        checkpoint's state (random streams restored) when the attempt resumes one."""
        state = self.run.begin(self.config, identity, flags, self.dataset_sizes, self.device, total_steps)
        if state is not None:
            self.restore(state)
        return state

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.run.close()
        distributed.shutdown()
        torch.set_num_threads(self._threads)
