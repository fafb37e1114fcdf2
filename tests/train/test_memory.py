"""Sizes that cannot fit are refused from an estimate of what they need, computed without allocating it."""

import pytest
import torch

from tandem.errors import UsageError
from tandem.models import DiTConfig, build_dit
from tandem.train import memory


def test_parameters_are_counted_without_allocating_them():
    assert memory.count_parameters(lambda: torch.nn.Linear(3, 2)) == 8
    # A layer of 10^12 weights: counted on the meta device, never allocated.
    assert memory.count_parameters(lambda: torch.nn.Linear(1_000_000, 1_000_000, bias=False)) == 10**12
    assert memory.count_parameters(lambda: build_dit(DiTConfig())) == 4_167_568


def test_training_bytes_are_float32_copies_and_activations():
    assert memory.training_bytes(parameters=10, copies=5, activations=3) == 4 * (50 + 3)


def test_a_size_that_cannot_fit_is_one_line_with_both_figures():
    with pytest.raises(UsageError) as error:
        memory.require_fits(10**18, torch.device("cpu"), "--thing 7", "pass a smaller --thing")
    message = str(error.value)
    assert message.startswith("--thing 7 needs at least 1,000 PB of memory, more than the ")
    assert message.endswith(" here; pass a smaller --thing") and "\n" not in message
    memory.require_fits(1, torch.device("cpu"), "--thing 1", "")  # fits: nothing raised
