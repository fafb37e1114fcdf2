import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    # Ops this small only lose from threading, badly so on a busy machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
