import pytest
import torch

from tandem.train.optimizers import adamw, clip_grad_norm, sgd


def toy():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))


def train(model, optimizer, steps=5):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(16, 4, generator=generator)).square().mean().backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("build", [adamw, sgd])
def test_fused_on_the_cpu(build):
    assert build(toy().parameters(), lr=0.01).defaults["fused"] is True


def test_fused_adamw_and_sgd_follow_the_foreach_path():
    for build, reference in (
        (lambda p: adamw(p, lr=0.01, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
        (
            lambda p: sgd(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, foreach=True),
        ),
    ):
        a, b = toy(), toy()
        for x, y in zip(train(a, build(a.parameters())), train(b, reference(b.parameters())), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)


def with_grads():
    model = toy()
    model(torch.randn(16, 4, generator=torch.Generator().manual_seed(2))).sum().backward()
    return model


def test_no_clip_at_zero_measures_the_norm_and_leaves_the_gradients(monkeypatch):
    model, reference = with_grads(), with_grads()
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), float("inf"))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: pytest.fail("clipped at 0"))
    norm = clip_grad_norm(model.parameters(), 0.0)
    assert torch.equal(norm, expected)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


def test_clip_scales_the_gradients_down_to_the_bound():
    model = with_grads()
    before = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    norm = clip_grad_norm(model.parameters(), 0.5)
    assert torch.equal(norm, before) and before > 0.5
    after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert after == pytest.approx(0.5, rel=1e-5)
