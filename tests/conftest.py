"""Shared fixtures for the unit tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread, restoring the setting afterwards.

    The models in these tests are tiny: with two threads, OpenMP synchronisation costs more than
    the arithmetic (and explodes on a shared CPU). Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
