"""DistributedDataParallel with gloo on 2 CPU ranks keeps the class subspaces identical.

Two processes are spawned on 127.0.0.1 with a free port (tests/_spawn.py); each trains the
same model with GCRSGD on its own half of every batch. DDP averages the gradients, so both
ranks must end with bit-identical subspaces, equal (to rounding) to one process training on
whole batches. Every wait has a timeout, so a broken process group fails the test instead of
hanging it.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from grassmann import GrassmannHead
from grassmann.optim import GCRSGD, param_groups
from tests._spawn import init_gloo, spawn

WORLD = 2
STEPS = 6
BATCH = 32  # per rank


def _model() -> nn.Module:
    torch.manual_seed(0)
    head = GrassmannHead(12, 6, [2, 3, 2, 1, 3, 2], seed=0, dtype=torch.float64)
    return nn.Sequential(nn.Linear(8, 12, dtype=torch.float64), nn.Tanh(), head)


def _batches():
    g = torch.Generator().manual_seed(3)
    for _ in range(STEPS):
        x = torch.randn(WORLD * BATCH, 8, dtype=torch.float64, generator=g)
        y = torch.randint(0, 6, (WORLD * BATCH,), generator=g)
        yield x, y


def _train(model: nn.Module, module: nn.Module, rank: int | None) -> None:
    opt = GCRSGD(param_groups(model, 1e-3), lr=0.2, momentum=0.9, reorth_every=2)
    for x, y in _batches():
        if rank is not None:
            x, y = x[rank * BATCH : (rank + 1) * BATCH], y[rank * BATCH : (rank + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(module(x), y).backward()
        opt.step()


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    init_gloo(rank, world, port)
    try:
        model = _model()
        if rank == 1:  # DDP broadcasts rank 0's parameters at construction
            with torch.no_grad():
                model[0].weight.add_(1.0)
        ddp = nn.parallel.DistributedDataParallel(model)
        _train(model, ddp, rank)
        torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_on_two_cpu_ranks_keeps_the_subspaces_identical(tmp_path):
    assert spawn(_worker, WORLD, str(tmp_path)) == [0] * WORLD
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    keys = [k for k in states[0] if "subspaces" in k]
    assert sorted(keys) == ["2.subspaces_k1", "2.subspaces_k2", "2.subspaces_k3"]
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key  # identical on both ranks

    single = _model()
    _train(single, single, rank=None)  # one process, whole batches
    start = _model().state_dict()
    for key, value in single.state_dict().items():
        torch.testing.assert_close(states[0][key], value, rtol=0, atol=1e-12)
        assert not torch.allclose(value, start[key])  # training moved everything
