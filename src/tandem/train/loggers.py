"""Where metrics go besides metrics.jsonl: TensorBoard event files and Weights & Biases.

The session hands every record it writes to metrics.jsonl to `Loggers.log` as well (rank 0 only), so
all of them hold the same numbers; each sample grid goes to them as an image (`log_image`), and at the end
the run's settings with its final metrics (`hparams`). `--loggers` adds loggers, never replaces one:
TensorBoard is on whenever its package is installed (`auto`, the default), `wandb` adds Weights & Biases
(the `--wandb-project` project; the API key comes from WANDB_API_KEY, `wandb login`, or a Modal Secret,
never from the settings; WANDB_MODE=offline writes <run>/wandb/ only), and `none` turns TensorBoard off
(`none,wandb`: W&B alone). TensorBoard's event files sit in the run directory itself, so that
`tensorboard --logdir runs` names each run by its run name.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

from tandem.errors import UsageError
from tandem.files import write_text_atomic

LOGGERS = ("tensorboard", "wandb")
AUTO, NONE = "auto", "none"


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def chosen(spec: str) -> list[str]:
    """The loggers a --loggers value asks for: TensorBoard when installed, unless `none` is named, and the
    loggers named; raises UsageError on an unknown name."""
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in (*LOGGERS, AUTO, NONE)]
    if unknown:
        raise UsageError(
            f"--loggers {spec!r}: unknown logger {unknown[0]!r}; use {', '.join(LOGGERS)} (comma-separated, added "
            "to TensorBoard), auto, or none (none,wandb: W&B alone)"
        )
    default = [] if NONE in names or not installed("tensorboard") else ["tensorboard"]
    return list(dict.fromkeys([*default, *(n for n in names if n in LOGGERS)]))


def check(spec: str) -> list[str]:
    """Every problem with --loggers before anything is written: a missing package, wandb without a key."""
    names = chosen(spec)
    for name in names:
        if not installed(name):
            raise UsageError(
                f"--loggers {name}: the {name} package is not installed; `uv pip install {name}` or drop it"
            )
    if "wandb" in names and not wandb_can_log():
        raise UsageError(
            "--loggers wandb: no Weights & Biases API key; set WANDB_API_KEY (on Modal: a Secret), run `wandb login`, "
            "or set WANDB_MODE=offline"
        )
    return names


def wandb_can_log() -> bool:
    """An API key where wandb looks for one (the environment, then ~/.netrc), or a mode that needs none."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def scalars(record: dict) -> dict[str, float]:
    """The numbers of a record, without its step (final records' under final/)."""
    prefix = "final/" if record.get("final") else ""
    return {
        prefix + key: float(value)
        for key, value in record.items()
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


def hparam_value(value):
    """A setting as TensorBoard's hparams take it: a number, a string or a bool (None: "none")."""
    return value if isinstance(value, bool | int | float | str) else str(value).lower()


def hparam_metrics(metrics: dict) -> dict[str, float]:
    """The final numbers the hparams table shows, under tags of their own (hparams/<name>)."""
    return {f"hparams/{key}": float(value) for key, value in scalars(metrics).items()}


class TensorBoard:
    def __init__(self, run_dir: Path, start_step: int):
        self.run_dir, self.start_step = run_dir, start_step
        self._writer = None

    @property
    def writer(self):
        """The event writer, made when the first record comes (importing it takes a while): training
        starts without waiting for it."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: on resume, TensorBoard drops what an earlier attempt logged after the checkpoint
            # (steps from start_step + 1 on), as metrics.jsonl does; those steps are redone.
            purge = self.start_step + 1 if self.start_step else None
            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge)
        return self._writer

    def log(self, record: dict) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])

    def log_image(self, tag: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            self.writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def hparams(self, settings: dict, metrics: dict, step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = hparam_metrics(metrics)
        for summary in hparams({k: hparam_value(v) for k, v in settings.items()}, values):
            self.writer.file_writer.add_summary(summary, step)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class WandB:
    def __init__(self, run_dir: Path, project: str, config: dict):
        import wandb

        # One W&B run per run directory: its id is kept there, so a resumed run continues the same one.
        id_file = run_dir / "wandb" / "run-id"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
        write_text_atomic(id_file, run_id + "\n", parents=True)
        self.run = wandb.init(
            project=project,
            name=run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=config,
            settings=wandb.Settings(console="off"),  # leave stdout alone: the progress bar and logs are ours
        )
        # Steps are a logged value rather than W&B's own counter, which refuses steps redone after a resume.
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, record: dict) -> None:
        values = scalars(record)
        if record.get("final"):
            self.run.summary.update(values)
        elif values:
            self.run.log({"step": record["step"], **values})

    def log_image(self, tag: str, path: Path, step: int) -> None:
        import wandb

        self.run.log({"step": step, tag: wandb.Image(str(path))})

    def hparams(self, settings: dict, metrics: dict, step: int) -> None:
        # The settings as trained (a continued run's changes included), beside the final metrics.
        self.run.config.update({"config": settings}, allow_val_change=True)
        self.run.summary.update(hparam_metrics(metrics))

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """The loggers of one run; an empty Loggers does nothing."""

    def __init__(self, loggers=()):
        self.loggers = list(loggers)

    @classmethod
    def open(cls, spec: str, run_dir: Path, project: str, config: dict, start_step: int) -> Loggers:
        """The loggers --loggers names, writing into run_dir; `config` is what W&B records as the run's config."""
        loggers = []
        for name in check(spec):
            if name == "tensorboard":
                loggers.append(TensorBoard(run_dir, start_step))
            else:
                loggers.append(WandB(run_dir, project, config))
        return cls(loggers)

    def log(self, record: dict) -> None:
        for logger in self.loggers:
            logger.log(record)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        """A PNG (a sample grid) as an image of `step`."""
        for logger in self.loggers:
            logger.log_image(tag, path, step)

    def hparams(self, settings: dict, metrics: dict, step: int) -> None:
        """The run's settings with its final metrics, compared across runs (TensorBoard's HPARAMS tab)."""
        for logger in self.loggers:
            logger.hparams(settings, metrics, step)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []
