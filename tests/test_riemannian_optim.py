"""geoopt's Riemannian optimisers on the Grassmann manifold: the top-k eigenspace problem.

Plain RiemannianSGD, Nesterov, dampening, RiemannianAdam, RiemannianLineSearch and
``stabilize`` with every retraction are in the battery (tests/test_manifold_battery.py); here
are the options it does not vary: weight decay, a learning-rate schedule, a batch of subspaces.
"""

from __future__ import annotations

import geoopt
import pytest
import torch

from grassmann import Grassmann, principal_angles
from tests.test_manifold import orth_err
from tests.test_manifold_battery import eigen_problem

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def run(
    opt_factory, man: Grassmann, steps: int, seed: int = 0, sched=None
) -> tuple[torch.Tensor, list]:
    c, _ = eigen_problem(seed=seed)
    x0 = man.random(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    x = geoopt.ManifoldParameter(x0, manifold=man)
    opt = opt_factory([x])
    scheduler = sched(opt) if sched is not None else None
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = -torch.trace(x.T @ c @ x)  # maximise tr(X^T C X)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
    return x.detach(), losses


def test_riemannian_sgd_with_momentum_and_weight_decay_converges():
    man = Grassmann()
    c, top = eigen_problem()
    lr = 0.2 / float(torch.linalg.matrix_norm(c, ord=2))
    x, losses = run(
        lambda p: geoopt.optim.RiemannianSGD(
            p, lr=lr, momentum=0.8, weight_decay=1e-3, nesterov=True, dampening=0.0
        ),
        man,
        steps=200,
    )
    assert orth_err(x) < 1e-10
    assert float(principal_angles(x, top).max()) < 1e-6
    assert losses[-1] < losses[0]


def test_riemannian_adam_converges_to_top_k_eigenspace():
    man = Grassmann()
    c, top = eigen_problem()
    x, losses = run(
        lambda p: geoopt.optim.RiemannianAdam(p, lr=0.1),
        man,
        steps=500,
        sched=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99),
    )
    assert orth_err(x) < 1e-10
    assert float(principal_angles(x, top).max()) < 1e-3
    assert losses[-1] == pytest.approx(-float(torch.linalg.eigvalsh(c)[-3:].sum()), rel=1e-5)


def test_riemannian_sgd_on_a_batch_of_subspaces():
    # one parameter holding a batch (b, n, k): each is driven to the top-k space of its own C
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(5, 8, 8, dtype=torch.float64, generator=gen)
    c = (a + a.mT) / 2 + 4 * torch.diag(torch.tensor([0, 0, 0, 0, 0, 1, 2, 3.0])).double()
    top = torch.linalg.eigh(c)[1][..., -2:]
    man = Grassmann(retraction="polar")
    x = geoopt.ManifoldParameter(man.random(5, 8, 2, dtype=torch.float64), manifold=man)
    opt = geoopt.optim.RiemannianSGD([x], lr=0.05, momentum=0.5)
    for _ in range(300):
        opt.zero_grad()
        (-(x * (c @ x)).sum()).backward()
        opt.step()
    assert float(principal_angles(x.detach(), top).max()) < 1e-6
