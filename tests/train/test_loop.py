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
    """The run the loop writes through (tandem.train.run_writer.RunWriter's side), writing down what the
    loop asks of it."""

    def __init__(self):
        self.start_step, self.events = 0, []

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


def session(stop_after: int = 0) -> SimpleNamespace:
    """What the loop reads of a Session: one process on the CPU, and its run."""
    config = SimpleNamespace(log_every=2, checkpoint_every=3, compile=False, stop_after=stop_after, batch_size=4)
    layout = SimpleNamespace(world_size=1, rank=0)
    return SimpleNamespace(
        config=config, run=Recorder(), layout=layout, device=torch.device("cpu"), is_main=True, kind="dit",
        generators={}, print=lambda *args: None,
    )  # fmt: skip


def run(s, total: int) -> tuple[int, dict]:
    step, metrics, timing = train_loop(
        s,
        lambda step: (torch.tensor(float(step)), torch.tensor(1.0)),
        total,
        training_state=lambda: "state",
        lr=lambda: 0.1,
        evaluate_every=4,
        evaluate=lambda step: {"acc": step / 10},
        sample_every=2,
        sample=lambda step: s.run.events.append(("sample", step)),
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


def test_the_bookkeeping_after_each_step_in_its_order():
    s = session()
    assert run(s, 6) == (6, {"acc": 0.4})
    assert s.run.events == [
        ("log", 2, 0.5),  # the losses of steps 0 and 1
        ("sample", 2),
        ("log", 3, 2.0),  # before the checkpoint, always
        ("checkpoint", 3, "state"),
        ("log", 4, 3.0),
        ("record", {"step": 4, "acc": 0.4}),  # the evaluation, before anything is saved after it
        ("sample", 4),
        ("log", 6, 4.5),
        ("checkpoint", 6, "state"),  # the last step: a checkpoint, and no grid (the trainer draws the final one)
        ("checkpoints on disk",),  # waits for that checkpoint: end-to-end time ends here
    ]


def test_a_stop_request_checkpoints_that_step_and_ends_the_loop():
    s = session(stop_after=1)
    assert run(s, 6) == (1, {})
    assert s.run.events == [("log", 1, 0.0), ("checkpoint", 1, "state"), ("checkpoints on disk",)]
