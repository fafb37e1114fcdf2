import math
from types import SimpleNamespace

import torch

from tandem.train.loop import LossWindow, duration, progress_line, train_loop


def test_loss_window_means_and_resets():
    window = LossWindow()
    window.add(1, torch.tensor(2.0), torch.tensor(0.5))
    window.add(2, torch.tensor(4.0), torch.tensor(1.5))
    assert window.read() == (3.0, 1.0, None)
    loss, grad_norm, bad = window.read()
    assert math.isnan(loss) and math.isnan(grad_norm) and bad is None


def test_loss_window_names_the_first_step_that_was_not_finite():
    window = LossWindow()
    window.add(7, torch.tensor(1.0), torch.tensor(1.0))
    window.add(8, torch.tensor(1.0), torch.tensor(float("inf")))
    window.add(9, torch.tensor(float("nan")), torch.tensor(1.0))
    assert window.read()[2] == 8


class Recorder:
    """The run the loop writes through (tandem.train.run_writer.RunWriter's side), writing down what the
    loop asks of it."""

    def __init__(self, start_step: int = 0, state: dict | None = None):
        self.start_step, self.state, self.events = start_step, state, []

    def log(self, record):
        kept = {k: v for k, v in record.items() if k not in ("img_per_s", "elapsed_s", "grad_norm", "lr")}
        self.events.append(("log", kept["step"], kept["loss"]) if "loss" in kept else ("record", kept))

    def save(self, step, state, generators):
        self.events.append(("checkpoint", step, state))

    def wait(self):
        self.events.append(("checkpoints on disk",))

    def elapsed(self):
        return 0.0

    def diverged(self, step):
        raise AssertionError(f"diverged at {step}")


class GridRecorder:
    """The trainer's grids (tandem.train.samples.GridsInBackground's side): started, then finished."""

    def __init__(self, events: list):
        self.events, self.pending = events, None

    def start(self, step):
        self.finish()
        self.events.append(("sample", step))
        self.pending = step

    def finish(self):
        if self.pending is not None:
            self.events.append(("grid on disk", self.pending))
            self.pending = None


def session(stop_after: int = 0, printed: list | None = None, run: Recorder | None = None) -> SimpleNamespace:
    """What the loop reads of a Session: one process on the CPU, and its run."""
    config = SimpleNamespace(log_every=2, checkpoint_every=3, compile=False, stop_after=stop_after, batch_size=4)
    layout = SimpleNamespace(world_size=1, rank=0)
    return SimpleNamespace(
        config=config, run=run or Recorder(), layout=layout, device=torch.device("cpu"), is_main=True, kind="dit",
        generators={}, print=(printed if printed is not None else []).append,
    )  # fmt: skip


def run(s, total: int) -> tuple[int, dict]:
    step, metrics, timing = train_loop(
        s,
        lambda step: (torch.tensor(float(step)), torch.tensor(1.0)),
        total,
        training_state=lambda: {"trained": True},
        lr=lambda: 0.1,
        evaluate_every=4,
        evaluate=lambda step: {"acc": step / 10},
        sample_every=2,
        grids=GridRecorder(s.run.events),
    )
    assert set(timing) == {
        "loop_s",
        "checkpoint_s",
        "sample_s",
        "evaluate_s",
        "compile_s",
        "step_img_per_s",
        "end_to_end_img_per_s",
    }
    return step, metrics


def cut(steps: int, loss_sum: float) -> dict:
    """What a checkpoint holds: the training state, and the loss window it cut (grad norms are 1 here)."""
    return {"trained": True, "loss_window": {"steps": steps, "loss_sum": loss_sum, "grad_norm_sum": float(steps)}}


def test_the_bookkeeping_after_each_step_in_its_order():
    s = session()
    assert run(s, 6) == (6, {"acc": 0.4})
    assert s.run.events == [
        ("log", 2, 0.5),  # the losses of steps 1 and 2
        ("sample", 2),  # drawn while steps 3... train
        ("grid on disk", 2),  # finished before the next checkpoint: a checkpoint implies its grids
        ("checkpoint", 3, cut(1, 2.0)),  # between logs: the window so far goes with it (checked finite first)
        ("log", 4, 2.5),  # steps 3 and 4: a whole interval
        ("record", {"step": 4, "acc": 0.4}),  # the evaluation, before anything is saved after it
        ("sample", 4),
        ("log", 6, 4.5),
        ("grid on disk", 4),
        ("checkpoint", 6, cut(0, 0.0)),  # the last step: a checkpoint, and no grid (the trainer draws the final one)
        ("checkpoints on disk",),  # waits for that checkpoint: end-to-end time ends here
    ]


def test_a_resumed_window_averages_over_the_steps_it_covers():
    """Resumed from the checkpoint of step 3, the point at step 4 is the one an uninterrupted run logs."""
    s = session(run=Recorder(start_step=3, state=cut(1, 2.0)))
    assert run(s, 6) == (6, {"acc": 0.4})
    assert [e for e in s.run.events if e[0] == "log"] == [("log", 4, 2.5), ("log", 6, 4.5)]


def test_a_stop_request_checkpoints_that_step_and_ends_the_loop():
    s = session(stop_after=1)
    assert run(s, 6) == (1, {})
    assert s.run.events == [("checkpoint", 1, cut(1, 0.0)), ("checkpoints on disk",)]


def test_a_progress_line_says_where_the_run_is_and_how_long_is_left():
    record = {"step": 120, "loss": 0.58213, "lr": 1.89e-3, "grad_norm": 0.41234, "img_per_s": 1290.4, "elapsed_s": 62}
    assert progress_line(record, 600, 248.2) == (
        "step 120/600 ( 20%)  loss 0.5821  lr 1.89e-03  grad 0.412  1,290 img/s  elapsed 1m02s  ETA 4m08s"
    )
    assert [duration(s) for s in (0.4, 45, 248, 7380, float("nan"))] == ["0s", "45s", "4m08s", "2h03m", "?"]


def test_every_log_interval_prints_its_line_and_a_terminal_keeps_the_bar(monkeypatch, capsys):
    import sys

    printed = []
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is drawn on stderr
    run(session(printed=printed), 6)
    assert [line.split("  ")[0] for line in printed] == ["step 2/6 ( 33%)", "step 4/6 ( 67%)", "step 6/6 (100%)"]
    assert all(" ETA " in line and "loss " in line and " lr 1.00e-01" in line for line in printed)
    assert printed[-1].endswith("ETA 0s")
    assert "6/6" in capsys.readouterr().err  # the bar, drawn beside the lines
