"""geoopt's Riemannian optimisers on the Grassmann manifold: the top-k eigenspace problem."""

from __future__ import annotations

import geoopt
import pytest
import torch

from grassmann import Grassmann, principal_angles
from tests.test_manifold import orth_err


def problem(n: int = 10, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric C (n x n) with an eigengap >= 0.5 after the k-th eigenvalue, and its
    top-k eigenspace from ``torch.linalg.eigh`` (float64)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))[0]
    spectrum = torch.rand(n, dtype=torch.float64, generator=gen)
    spectrum[:k] += 1.5
    c = (q * spectrum) @ q.T
    c = (c + c.T) / 2
    evals, evecs = torch.linalg.eigh(c)
    assert float(evals[-k] - evals[-k - 1]) >= 0.5
    return c, evecs[:, -k:]


def run(
    opt_factory, man: Grassmann, steps: int, seed: int = 0, sched=None
) -> tuple[torch.Tensor, list]:
    c, _ = problem(seed=seed)
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


@pytest.mark.parametrize("retraction", ["qr", "polar", "expmap"])
def test_riemannian_sgd_recovers_top_k_eigenspace(retraction):
    man = Grassmann(retraction=retraction, check=False)
    c, top = problem()
    lr = 0.5 / float(torch.linalg.matrix_norm(c, ord=2))
    x, _ = run(lambda p: geoopt.optim.RiemannianSGD(p, lr=lr), man, steps=150)
    assert orth_err(x) < 1e-12
    assert float(principal_angles(x, top).max()) < 1e-6


def test_riemannian_sgd_with_momentum_and_weight_decay_converges():
    man = Grassmann()
    c, top = problem()
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


def test_riemannian_sgd_with_stabilize_uses_projx():
    man = Grassmann()
    c, top = problem()
    lr = 0.2 / float(torch.linalg.matrix_norm(c, ord=2))
    x, _ = run(lambda p: geoopt.optim.RiemannianSGD(p, lr=lr, momentum=0.5, stabilize=10), man, 200)
    assert float(principal_angles(x, top).max()) < 1e-6


def test_riemannian_adam_converges_to_top_k_eigenspace():
    man = Grassmann()
    c, top = problem()
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


@pytest.mark.parametrize("retraction", ["qr", "polar", "expmap"])
@pytest.mark.parametrize(("method", "cg"), [("armijo", "steepest"), ("wolfe", "pr")])
@pytest.mark.filterwarnings("ignore:No suitable step size could be found")
def test_riemannian_line_search_recovers_top_k_eigenspace(retraction, method, cg):
    """Regression: the line search retracts a point that requires grad, which qr/polar refused.

    geoopt's RiemannianLineSearch evaluates the closure at ``retr(x, t d)`` with autograd on;
    the qr/polar kernels wrote into an ``out=`` buffer there and raised a RuntimeError.
    """
    man = Grassmann(retraction=retraction, check=False)
    c, top = problem()
    x = geoopt.ManifoldParameter(
        man.random(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
        manifold=man,
    )
    opt = geoopt.optim.RiemannianLineSearch([x], line_search_method=method, cg_method=cg)

    def closure():
        opt.zero_grad()
        loss = -torch.trace(x.T @ c @ x)
        loss.backward()
        return float(loss.detach())

    for _ in range(100):
        opt.step(closure)
        # stop at convergence: the loss is flat to rounding there (angles ~ sqrt(eps)), and
        # scipy's Armijo search divides by zero once the slope is ~1e-16
        rgrad = man.egrad2rgrad(x.detach(), x.grad)
        if opt.last_step_size is None or float(rgrad.norm()) < 1e-7:
            break
    assert orth_err(x.detach()) < 1e-12
    assert float(principal_angles(x.detach(), top).max()) < 1e-6
