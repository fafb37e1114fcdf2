"""loss_curve.png from a run's metrics records: the training loss (log scale) with test accuracy when
there is any, the learning rate in a panel below, and a dotted line where the run was resumed.

matplotlib is imported here only, when a curve is drawn, and only its Agg canvas: no GUI backend.
"""

from __future__ import annotations

import math
from pathlib import Path

from tandem.files import atomic_write

RESUME_KEY = "resumed_from"  # the record a resumed run writes first: {"step": N, "resumed_from": "step_N.pt"}


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r and "step" in r and not r.get("final")]
    return [p[0] for p in points], [p[1] for p in points]


def loss_figure(records: list[dict], title: str):
    """The matplotlib Figure of loss_curve.png (separate so that tests can look at what it shows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, PercentFormatter

    steps, losses = _series(records, "loss")
    lr_steps, lrs = _series(records, "lr")
    acc_steps, accuracy = _series(records, "test_acc")
    resumed = sorted({r["step"] for r in records if RESUME_KEY in r})

    fig = Figure(figsize=(8, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    handles = []
    if losses:
        handles += ax.plot(steps, losses, color="tab:blue", label="training loss")
        ax.set_yscale("log")
        # labelled ticks between the decades (0.5, 0.7, 1, 2 ...), fewer the more decades the loss spans
        decades = math.log10(max(losses) / min(losses)) if min(losses) > 0 else 9
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
        ax.yaxis.set_major_locator(LogLocator(subs=subs))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if accuracy:
        ax_acc = ax.twinx()
        handles += ax_acc.plot(acc_steps, accuracy, "o-", color="tab:orange", label="test accuracy")
        ax_acc.set_ylabel("test accuracy")
        ax_acc.set_ylim(0, 1)
        ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
    if lrs:
        ax_lr.plot(lr_steps, lrs, color="tab:green", label="learning rate")
        ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.1e}" if y else "0"))
    ax_lr.set_ylabel("learning rate")
    ax_lr.yaxis.set_major_locator(MaxNLocator(3))
    ax_lr.grid(alpha=0.3)
    ax_lr.set_xlabel("step")
    ax_lr.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_lr.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    for i, step in enumerate(resumed):
        for axis in (ax, ax_lr):
            line = axis.axvline(step, color="0.4", linestyle=":", linewidth=1.2, label="resumed")
        if i == 0:
            handles.append(line)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_loss_curve(records: list[dict], path: Path, title: str) -> Path:
    fig = loss_figure(records, title)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path
