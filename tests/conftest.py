"""Shared test set-up: one torch thread per test, so results and timings do not depend on the machine's cores
(`make test` runs two pytest workers on two cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
