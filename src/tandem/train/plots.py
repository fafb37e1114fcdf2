"""loss_curve.png from a run's metrics records: the training loss (log scale, its ticks spanning the data)
with the classifier's accuracy when there is any (validation per epoch, the test set's once at the end),
the learning rate in a panel below, and a dotted line where the run was resumed.

matplotlib is imported here only, when a curve is drawn, and only its Agg canvas: no GUI backend.
"""

from __future__ import annotations

import math
from pathlib import Path

from tandem.files import atomic_write

RESUME_KEY = "resumed_from"  # the record a resumed run writes first: {"step": N, "resumed_from": "step_N.pt"}
ACCURACIES = (("val_acc", "validation accuracy"), ("test_acc", "test accuracy"))  # the per-epoch series


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r and "step" in r and not r.get("final")]
    return [p[0] for p in points], [p[1] for p in points]


def loss_figure(records: list[dict], title: str):
    """The matplotlib Figure of loss_curve.png (separate so that tests can look at what it shows)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, PercentFormatter

    steps, losses = _series(records, "loss")
    lr_steps, lrs = _series(records, "lr")
    # per epoch: validation accuracy (older runs scored the test set every epoch); the test set's, once
    accuracies = [(key, label, *_series(records, key)) for key, label in ACCURACIES]
    finals = [(r["step"], r["test_acc"]) for r in records if r.get("final") and "test_acc" in r]
    resumed = sorted({r["step"] for r in records if RESUME_KEY in r})

    fig = Figure(figsize=(8, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    handles = []
    positive = [v for v in losses if v > 0 and math.isfinite(v)]
    if positive:
        handles += ax.plot(steps, losses, color="tab:blue", label="training loss")
        ax.set_yscale("log")
        ticks = log_ticks(min(positive), max(positive))
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.set_ylim(ticks[0], ticks[-1])  # a labelled tick at or below the lowest loss, at or above the highest
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.3g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if finals or any(series[2] for series in accuracies):
        ax_acc = ax.twinx()
        for (_, label, acc_steps, accuracy), colour in zip(accuracies, ("tab:orange", "tab:red"), strict=True):
            if accuracy:
                handles += ax_acc.plot(acc_steps, accuracy, "o-", color=colour, label=label)
        if finals:
            handles += ax_acc.plot(*zip(*finals[-1:], strict=True), "*", color="tab:red", markersize=12,
                                   label="test accuracy (at the end)")  # fmt: skip
        ax_acc.set_ylabel("accuracy")
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


def log_ticks(low: float, high: float) -> list[float]:
    """Labelled ticks for a log axis from `low` to `high`: between the decades (0.5, 0.7, 1, 2 ...), fewer
    the more decades the data spans, from the last tick at or below `low` to the first at or above `high`,
    so that the axis shows both ends of the data against a number."""
    decades = math.log10(high / low)
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    first, last = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
    candidates = sorted(float(f"{sub * 10.0**d:.6g}") for d in range(first, last + 1) for sub in subs)
    below = max(i for i, t in enumerate(candidates) if t <= low)
    above = min(i for i, t in enumerate(candidates) if t >= high)
    if below == above:  # the data sits on one tick (a flat loss): one more on either side
        below, above = below - 1, above + 1
    return candidates[below : above + 1]


def plot_loss_curve(records: list[dict], path: Path, title: str) -> Path:
    fig = loss_figure(records, title)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    return path
