import math

import pytest
import torch
import torch.nn as nn

from tandem.errors import UsageError
from tandem.flow import flow_matching_loss, sample, sample_timesteps
from tandem.models import DIT_SIZES, DiTConfig, build_dit
from tandem.models.dit import DiTSize


@pytest.fixture(autouse=True)
def one_thread():
    # Ops this small only lose from threading, badly so on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Field(nn.Module):
    """A model whose velocity is a fixed function of (x, t); records the labels it sees."""

    def __init__(self, fn, num_classes: int = 10):
        super().__init__()
        self.fn = fn
        self.num_classes = num_classes
        self.class_dropout_prob = 0.0
        self.seen_labels = []

    def forward(self, x, t, y):
        self.seen_labels.append(y.clone())
        return self.fn(x, t.view(-1, 1, 1, 1))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -----------------------------------------------------------------------------
# timesteps


def test_logit_normal_timesteps_in_open_interval_with_right_median():
    t = sample_timesteps(20000, schedule="logit-normal", generator=gen(), mean=0.5, std=1.0)
    assert t.shape == (20000,)
    assert (t > 0).all() and (t < 1).all()
    assert abs(t.median().item() - 1 / (1 + math.exp(-0.5))) < 0.01
    # more mass in the middle than uniform
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.55


def test_uniform_timesteps():
    t = sample_timesteps(20000, schedule="uniform", generator=gen())
    assert (t >= 0).all() and (t < 1).all()
    assert abs(t.mean().item() - 0.5) < 0.01


def test_unknown_schedule():
    with pytest.raises(UsageError, match="logit-normal, uniform"):
        sample_timesteps(4, schedule="cosine", generator=gen())


# -----------------------------------------------------------------------------
# loss


def test_loss_is_zero_for_the_true_velocity():
    # On the path x_t = (1 - t) x0 + t noise the velocity noise - x0 equals (x_t - x0) / t.
    x0 = torch.randn(16, 1, 8, 8, generator=gen(1))
    oracle = Field(lambda x, t: (x - x0) / t)
    loss = flow_matching_loss(oracle, x0, torch.zeros(16, dtype=torch.long), generator=gen())
    assert loss.item() < 1e-8


def test_loss_is_deterministic_given_the_generator():
    cfg = DiTConfig()
    model = build_dit(cfg)
    with torch.no_grad():
        model.final_layer.linear.weight.normal_(std=0.1)
    x0, y = torch.randn(8, 1, 8, 8, generator=gen(1)), torch.arange(8)
    a = flow_matching_loss(model, x0, y, generator=gen(5))
    b = flow_matching_loss(model, x0, y, generator=gen(5))
    c = flow_matching_loss(model, x0, y, generator=gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_label_dropout_uses_the_null_class():
    field = Field(lambda x, t: x)
    field.class_dropout_prob = 0.5
    y = torch.zeros(4000, dtype=torch.long)
    flow_matching_loss(field, torch.zeros(4000, 1, 2, 2), y, generator=gen())
    seen = field.seen_labels[-1]
    assert set(seen.unique().tolist()) == {0, 10}
    assert abs((seen == 10).float().mean().item() - 0.5) < 0.03
    flow_matching_loss(field, torch.zeros(8, 1, 2, 2), y[:8], generator=gen(), class_dropout_prob=0.0)
    assert torch.equal(field.seen_labels[-1], y[:8])


@pytest.mark.training
def test_short_training_run_drives_the_loss_down(monkeypatch):
    monkeypatch.setitem(DIT_SIZES, "test", DiTSize(depth=2, hidden_size=64, num_heads=4))
    torch.manual_seed(0)
    model = build_dit(DiTConfig(size="test", image_size=4, patch_size=2, class_dropout_prob=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x0 = torch.randn(4, 1, 4, 4, generator=gen(1)).sign()  # four fixed +-1 images
    y = torch.arange(4)
    g = gen()

    def mean_loss():
        with torch.no_grad():
            return sum(flow_matching_loss(model, x0, y, generator=gen(s)).item() for s in range(20)) / 20

    before = mean_loss()
    for _ in range(150):
        loss = flow_matching_loss(model, x0, y, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mean_loss()
    assert before > 1.5  # ~ E|noise - x0|^2 = 2 for a zero-output model
    assert after < 0.5 * before


# -----------------------------------------------------------------------------
# sampling


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_exact_straight_field_reaches_the_endpoint(solver):
    # All mass at the point a: the velocity (x - a) / t is straight, so any step count lands on a.
    a = torch.randn(3, 1, 4, 4, generator=gen(1))
    field = Field(lambda x, t: (x - a) / t)
    out = sample(field, torch.zeros(3, dtype=torch.long), (1, 4, 4), steps=3, solver=solver, generator=gen())
    torch.testing.assert_close(out, a, atol=1e-5, rtol=0)


def test_heun_beats_euler_on_a_curved_field():
    # dx/dt = x from t=1 to t=0: x(0) = x(1) / e.
    field = Field(lambda x, t: x)
    labels = torch.zeros(2, dtype=torch.long)
    noise = torch.randn(2, 1, 2, 2, generator=gen())
    exact = noise / math.e
    errors = {}
    for solver in ("euler", "heun"):
        out = sample(field, labels, (1, 2, 2), steps=10, solver=solver, generator=gen())
        errors[solver] = (out - exact).abs().max().item()
    assert errors["heun"] < 0.2 * errors["euler"]
    # Euler's own error matches its closed form: (1 - 1/N)^N vs 1/e
    assert errors["euler"] == pytest.approx(noise.abs().max().item() * abs(0.9**10 - 1 / math.e), rel=1e-4)


def test_heun_uses_one_more_evaluation_per_step_except_the_last():
    field = Field(lambda x, t: x)
    sample(field, torch.zeros(1, dtype=torch.long), (1, 2, 2), steps=5, solver="heun", generator=gen())
    assert len(field.seen_labels) == 2 * 5 - 1


def test_sample_is_deterministic_and_uses_cfg():
    cfg = DiTConfig()
    model = build_dit(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen(3)))
    labels = torch.arange(4)
    a = sample(model, labels, (1, 8, 8), steps=4, cfg_scale=2.0, generator=gen())
    b = sample(model, labels, (4, 1, 8, 8), steps=4, cfg_scale=2.0, generator=gen())
    c = sample(model, labels, (1, 8, 8), steps=4, cfg_scale=1.0, generator=gen())
    assert a.shape == (4, 1, 8, 8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sample_rejects_bad_arguments():
    field = Field(lambda x, t: x)
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(UsageError, match="euler, heun"):
        sample(field, labels, (1, 2, 2), solver="rk4", generator=gen())
    with pytest.raises(UsageError, match="2 labels"):
        sample(field, labels, (3, 1, 2, 2), generator=gen())
