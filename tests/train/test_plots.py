import json
from pathlib import Path

import pytest
from PIL import Image

from tandem.train import run_training
from tandem.train.plots import loss_figure, plot_loss_curve

# A classifier-like log: losses and lr every 10 steps, accuracy per epoch, resumed at step 40.
RECORDS = (
    [{"step": s, "loss": 2.0 / (1 + s / 20), "lr": 0.05 * (1 - s / 100), "img_per_s": 1e4} for s in range(10, 50, 10)]
    + [{"step": 40, "resumed_from": "step_0000040.pt"}]
    + [{"step": s, "loss": 2.0 / (1 + s / 20), "lr": 0.05 * (1 - s / 100)} for s in range(50, 110, 10)]
    + [{"step": 50, "epoch": 1, "test_acc": 0.6}, {"step": 100, "epoch": 2, "test_acc": 0.8}]
    + [{"step": 100, "final": True, "status": "completed", "test_acc": 0.8}]
)


def test_loss_curve_shows_loss_accuracy_learning_rate_and_the_resume():
    fig = loss_figure(RECORDS, "classifier-1")
    loss_ax, lr_ax, acc_ax = fig.axes  # the twin accuracy axis is added last
    assert loss_ax.get_title() == "classifier-1" and loss_ax.get_yscale() == "log"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["training loss", "test accuracy", "resumed"]
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_xlabel() == "step"
    assert acc_ax.get_ylabel() == "test accuracy" and acc_ax.get_ylim() == (0.0, 1.0)

    (loss_line,) = [line for line in loss_ax.lines if line.get_label() == "training loss"]
    assert list(loss_line.get_xdata()) == list(range(10, 110, 10))
    (lr_line,) = [line for line in lr_ax.lines if line.get_label() == "learning rate"]
    assert lr_line.get_ydata()[0] == pytest.approx(0.045)
    # the accuracy of the final record is the epoch-2 point, not a third one
    assert list(acc_ax.lines[0].get_xdata()) == [50, 100]
    # a dotted line at step 40 in both panels
    for ax in (loss_ax, lr_ax):
        (mark,) = [line for line in ax.lines if line.get_label() == "resumed"]
        assert list(mark.get_xdata()) == [40, 40] and mark.get_linestyle() == ":"

    fig.canvas.draw()  # readable ticks: the loss axis is labelled between decades, in plain numbers
    low, high = loss_ax.get_ylim()
    labels = [t.get_text() for t in loss_ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert labels == ["0.5", "0.7", "1"]  # the loss runs from 1.33 to 0.33


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
