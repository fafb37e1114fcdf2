import contextlib
import math
from types import SimpleNamespace

import torch

from tandem.train.loop import LossWindow, train_loop


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
    """The session side of the loop, writing down what the loop asks of it."""

    def __init__(self, stop_at: int | None = None, **config):
        self.config = SimpleNamespace(log_every=2, checkpoint_every=3, compile=False, **config)
        self.start_step, self.stop_at, self.events = 0, stop_at, []

    def progress(self, total):
        return contextlib.nullcontext(SimpleNamespace(update=lambda: None))

    def should_stop(self, step, stop):
        return step == self.stop_at

    def log_window(self, step, window, bar, **extra):
        self.events.append(("log", step, window.read()[0]))

    def untimed(self, part):
        return contextlib.nullcontext()

    def loop_started(self):
        self.events.append(("loop started",))

    def loop_ended(self):
        self.events.append(("loop ended",))

    def log(self, record):
        self.events.append(("record", record))

    def save_checkpoint(self, step, state):
        self.events.append(("checkpoint", step, state))


def run(s: Recorder, total: int) -> tuple[int, dict]:
    return train_loop(
        s,
        lambda step: (torch.tensor(float(step)), torch.tensor(1.0)),
        total,
        training_state=lambda: "state",
        lr=lambda: 0.1,
        evaluate_every=4,
        evaluate=lambda step: {"acc": step / 10},
        sample_every=2,
        sample=lambda step: s.events.append(("sample", step)),
    )


def test_the_bookkeeping_after_each_step_in_its_order():
    s = Recorder()
    assert run(s, 6) == (6, {"acc": 0.4})
    assert s.events == [
        ("loop started",),
        ("log", 2, 0.5),  # the losses of steps 0 and 1
        ("sample", 2),
        ("log", 3, 2.0),  # before the checkpoint, always
        ("checkpoint", 3, "state"),
        ("log", 4, 3.0),
        ("record", {"step": 4, "acc": 0.4}),  # the evaluation, before anything is saved after it
        ("sample", 4),
        ("log", 6, 4.5),
        ("checkpoint", 6, "state"),  # the last step: a checkpoint, and no grid (the trainer draws the final one)
        ("loop ended",),  # waits for that checkpoint: end-to-end time ends here
    ]


def test_a_stop_request_checkpoints_that_step_and_ends_the_loop():
    s = Recorder(stop_at=1)
    assert run(s, 6) == (1, {})
    assert s.events == [("loop started",), ("log", 1, 0.0), ("checkpoint", 1, "state"), ("loop ended",)]
