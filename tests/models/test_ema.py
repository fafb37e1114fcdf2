import copy

import pytest
import torch
import torch.nn as nn

from tandem.errors import UsageError
from tandem.models.ema import EMA, unwrap


class Compiled(nn.Module):
    """Stands in for torch.compile's wrapper, which keeps the model as `_orig_mod`."""

    def __init__(self, module):
        super().__init__()
        self._orig_mod = module

    def forward(self, *args):
        return self._orig_mod(*args)


def toy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_math_and_buffers():
    model = toy_model()
    p0 = [p.detach().clone() for p in model.parameters()]
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves the BatchNorm running stats
    ema.update(model)
    for p_ema, p_start, p_now in zip(ema.module.parameters(), p0, model.parameters(), strict=True):
        torch.testing.assert_close(p_ema, 0.9 * p_start + 0.1 * p_now)
    for b_ema, b in zip(ema.module.buffers(), model.buffers(), strict=True):
        assert torch.equal(b_ema, b)
    # the average is a separate frozen copy
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training


def test_ema_converges_geometrically():
    model = toy_model()
    start = model[0].weight.detach().clone()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.zero_()
    for _ in range(3):
        ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, start * 0.5**3)
    assert ema.num_updates == 3


def test_ema_unwraps_compile_and_data_parallel():
    model = toy_model()
    for wrapped in (Compiled(model), nn.DataParallel(model), Compiled(nn.DataParallel(model))):
        assert unwrap(wrapped) is model
        ema = EMA(wrapped, decay=0.0)
        with torch.no_grad():
            model[0].bias.add_(1.0)
        ema.update(wrapped)
        assert torch.equal(ema.module[0].bias, model[0].bias)
        assert list(ema.module.state_dict()) == list(model.state_dict())


def test_ema_state_dict_round_trip():
    model = toy_model()
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    restored = EMA(toy_model(), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and restored.num_updates == 1
    for a, b in zip(restored.module.state_dict().values(), ema.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_ema_over_cached_lists_is_bitwise_the_per_step_rebuild():
    """The cached-list update gives exactly what rebuilding the sorted lists every step gave."""

    def rebuilt_update(ema_module, src, decay):  # the update as it was written before the cache
        with torch.no_grad():
            ema_params = [p for _, p in sorted(ema_module.named_parameters())]
            src_params = [p.detach() for _, p in sorted(src.named_parameters())]
            torch._foreach_lerp_(ema_params, src_params, 1.0 - decay)
            for ema_b, b in zip(ema_module.buffers(), src.buffers(), strict=True):
                ema_b.copy_(b)

    model = toy_model()
    ema = EMA(model, decay=0.999)
    reference = copy.deepcopy(ema.module)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        optimizer.zero_grad()
        model.train()(torch.randn(8, 3, generator=generator)).square().mean().backward()
        optimizer.step()
        ema.update(model)
        rebuilt_update(reference, model, 0.999)
    for (name, a), b in zip(ema.module.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(ema.module[0].weight, toy_model()[0].weight)  # it did move


def test_ema_rejects_another_model():
    ema = EMA(toy_model())
    with pytest.raises(ValueError, match="not the one"):
        ema.update(nn.Linear(3, 4))


def test_ema_rejects_bad_decay():
    with pytest.raises(UsageError, match="decay"):
        EMA(toy_model(), decay=1.5)
