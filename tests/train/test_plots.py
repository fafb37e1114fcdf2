import json
from pathlib import Path

import pytest
from PIL import Image

from tandem.train import run_training
from tandem.train.plots import log_ticks, loss_figure, plot_loss_curve

# A classifier-like log: losses and lr every 10 steps, validation accuracy per epoch, test accuracy at the
# end, resumed at step 40.
RECORDS = (
    [{"step": s, "loss": 2.0 / (1 + s / 20), "lr": 0.05 * (1 - s / 100), "img_per_s": 1e4} for s in range(10, 50, 10)]
    + [{"step": 40, "resumed_from": "step_0000040.pt"}]
    + [{"step": s, "loss": 2.0 / (1 + s / 20), "lr": 0.05 * (1 - s / 100)} for s in range(50, 110, 10)]
    + [{"step": 50, "epoch": 1, "val_acc": 0.6}, {"step": 100, "epoch": 2, "val_acc": 0.8}]
    + [{"step": 100, "final": True, "status": "completed", "test_acc": 0.78, "val_acc": 0.8}]
)


def test_loss_curve_shows_loss_accuracy_learning_rate_and_the_resume():
    fig = loss_figure(RECORDS, "classifier-1")
    loss_ax, lr_ax, acc_ax = fig.axes  # the twin accuracy axis is added last
    assert loss_ax.get_title() == "classifier-1" and loss_ax.get_yscale() == "log"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "training loss",
        "validation accuracy",
        "test accuracy (at the end)",
        "resumed",
    ]
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_xlabel() == "step"
    assert acc_ax.get_ylabel() == "accuracy" and acc_ax.get_ylim() == (0.0, 1.0)

    (loss_line,) = [line for line in loss_ax.lines if line.get_label() == "training loss"]
    assert list(loss_line.get_xdata()) == list(range(10, 110, 10))
    (lr_line,) = [line for line in lr_ax.lines if line.get_label() == "learning rate"]
    assert lr_line.get_ydata()[0] == pytest.approx(0.045)
    # validation per epoch (the final record's is the epoch-2 point, not a third one); the test set once
    assert list(acc_ax.lines[0].get_xdata()) == [50, 100]
    assert (list(acc_ax.lines[1].get_xdata()), list(acc_ax.lines[1].get_ydata())) == ([100], [0.78])
    # a dotted line at step 40 in both panels
    for ax in (loss_ax, lr_ax):
        (mark,) = [line for line in ax.lines if line.get_label() == "resumed"]
        assert list(mark.get_xdata()) == [40, 40] and mark.get_linestyle() == ":"

    fig.canvas.draw()  # readable ticks: the loss axis is labelled between decades, in plain numbers
    low, high = loss_ax.get_ylim()
    labels = [t.get_text() for t in loss_ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    # the loss runs from 1.33 to 0.33: a labelled tick below the last (lowest) value and above the first
    assert labels == ["0.3", "0.5", "0.7", "1", "1.5"] and (low, high) == (0.3, 1.5)


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0.333, 1.333, [0.3, 0.5, 0.7, 1.0, 1.5]),
        (0.41, 0.45, [0.3, 0.5]),  # within one step of the ladder: its two neighbours
        (0.0412, 1.8, [0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),  # more decades, fewer ticks in each
        (0.00123, 2.5, [0.001, 0.01, 0.1, 1.0, 10.0]),
        (1.0, 1.0, [0.7, 1.0, 1.5]),  # a flat loss sits between two ticks
    ],
)
def test_log_ticks_span_the_data(low, high, ticks):
    assert log_ticks(low, high) == ticks


def test_plot_loss_curve_writes_a_png(tmp_path):
    path = plot_loss_curve(RECORDS, tmp_path / "loss_curve.png", "run")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (800, 550)


@pytest.mark.training
def test_a_resumed_run_records_where_it_resumed(dit_config):
    run_training("dit", dit_config(run_name="r", stop_after=3))
    second = run_training("dit", dit_config(run_name="r", resume=True))
    records = [json.loads(line) for line in Path(second.run_dir, "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if "resumed_from" in r] == [{"step": 3, "resumed_from": "step_0000003.pt"}]
    fig = loss_figure(records, "r")
    assert "resumed" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
