"""Shared fixtures: devices (CUDA skipped cleanly when absent), dtypes, one CPU thread,
hypothesis profiles."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Deterministic, deadline-free property tests: CI machines are slow and noisy, and a failing
# example must reproduce on the next run.
settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

HAS_CUDA = torch.cuda.is_available()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available")

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, requires_cuda])]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Run the test on the CPU, and on CUDA when it is present."""
    return torch.device(request.param)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def one_cpu_thread():
    """One intra-op CPU thread for the test. Loops of tiny products (optimiser runs on 10 x 3
    matrices) are fastest on one thread, and immune to a loaded machine: with two threads each
    small kernel waits for the other thread to be scheduled (measured: 5-30x slower on a 2-core
    machine running other jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tol(dtype: torch.dtype) -> float:
    """A tolerance for identities that lose a few digits to rounding."""
    return 1e-4 if dtype == torch.float32 else 1e-10
