"""Stiefel retractions (QR, polar, Cayley) and orthonormalize: properties and optimisation."""

from __future__ import annotations

import geoopt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grassmann import (
    Stiefel,
    cayley_retraction,
    orthonormalize,
    polar_retraction,
    qr_retraction,
)
from tests.conftest import tol
from tests.test_manifold import eye, orth_err, problems, rand_point, randn

RETRACTIONS = {"qr": qr_retraction, "polar": polar_retraction, "cayley": cayley_retraction}


def stiefel_tangent(x: torch.Tensor, gen, scale: float | None = None) -> torch.Tensor:
    """Tangent vector of the Stiefel manifold at x (X^T U skew), spectral norm ``scale``."""
    u = geoopt.EuclideanStiefel().proju(x, randn(x.shape, x.dtype, gen))
    if scale is not None:
        u = u * (scale / torch.linalg.matrix_norm(u, ord=2, keepdim=True).clamp_min(1e-30))
    return u


@pytest.mark.parametrize("name", sorted(RETRACTIONS))
@settings(max_examples=15)
@given(p=problems(min_codim=0), scale=st.floats(0.0, 3.0))
def test_stiefel_retraction_lands_on_manifold(name, p, scale):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    y = RETRACTIONS[name](x, stiefel_tangent(x, gen, scale))
    assert orth_err(y) < 10 * tol(dtype)


@pytest.mark.parametrize("name", sorted(RETRACTIONS))
@settings(max_examples=15)
@given(p=problems(min_codim=0))
def test_stiefel_retraction_at_zero_is_identity(name, p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    assert torch.allclose(RETRACTIONS[name](x, torch.zeros_like(x)), x, atol=tol(dtype))


@pytest.mark.parametrize("name", sorted(RETRACTIONS))
@settings(max_examples=15)
@given(p=problems(min_codim=0, batches=((),)))
def test_stiefel_retraction_has_velocity_u_at_zero(name, p):
    n, k, _, _, gen = p
    dtype = torch.float64
    x = rand_point((n, k), dtype, gen)
    u = stiefel_tangent(x, gen, 1.0)
    h = 1e-5
    fd = (RETRACTIONS[name](x, h * u) - RETRACTIONS[name](x, -h * u)) / (2 * h)
    assert torch.allclose(fd, u, atol=1e-8)


@given(p=problems(min_codim=0), scale=st.floats(0.0, 3.0))
def test_cayley_retraction_equals_dense_cayley_transform(p, scale):
    n, k, batch, _, gen = p
    dtype = torch.float64
    x = rand_point((*batch, n, k), dtype, gen)
    u = stiefel_tangent(x, gen, scale)
    uh = u - 0.5 * x @ (x.mT @ u)
    w = uh @ x.mT - x @ uh.mT  # skew, W X = U
    assert torch.allclose(w @ x, u, atol=1e-12)
    i = eye(n, dtype)
    dense = torch.linalg.solve(i - 0.5 * w, (i + 0.5 * w) @ x)
    assert torch.allclose(cayley_retraction(x, u), dense, atol=1e-10)


@given(p=problems(min_codim=0), scale=st.floats(0.0, 3.0))
def test_polar_and_qr_retractions_equal_their_svd_and_householder_definitions(p, scale):
    n, k, batch, _, gen = p
    dtype = torch.float64
    x = rand_point((*batch, n, k), dtype, gen)
    u = stiefel_tangent(x, gen, scale)
    svd_u, _, svd_vh = torch.linalg.svd(x + u, full_matrices=False)
    assert torch.allclose(polar_retraction(x, u), svd_u @ svd_vh, atol=1e-10)
    assert torch.allclose(qr_retraction(x, u), orthonormalize(x + u, "qr"), atol=1e-10)


# ------------------------------------------------------------------------------------------------
# orthonormalize
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["qr", "polar", "cholesky_qr"])
@settings(max_examples=15)
@given(p=problems(min_codim=0))
def test_orthonormalize_is_orthonormal_and_keeps_span(method, p):
    n, k, batch, dtype, gen = p
    a = randn((*batch, n, k), dtype, gen)
    q = orthonormalize(a, method)
    assert q.shape == a.shape and q.dtype == dtype
    assert orth_err(q) < 10 * tol(dtype)
    residual = a - q @ (q.mT @ a)
    assert float(residual.abs().max()) < 1e4 * tol(dtype)


@given(problems(min_codim=0))
def test_orthonormalize_qr_and_cholesky_qr_give_the_same_positive_diagonal_factor(p):
    n, k, batch, _, gen = p
    dtype = torch.float64
    a = randn((*batch, n, k), dtype, gen)
    q1, q2 = orthonormalize(a, "qr"), orthonormalize(a, "cholesky_qr")
    r = q1.mT @ a
    assert bool((torch.diagonal(r, dim1=-2, dim2=-1) > 0).all())
    assert torch.allclose(r.tril(-1), torch.zeros_like(r), atol=1e-10)  # upper triangular
    assert torch.allclose(q1, q2, atol=1e-8)


@given(problems(min_codim=0))
def test_orthonormalize_polar_is_the_nearest_orthonormal_matrix(p):
    # optimality condition of min ||Q - A||_F: Q^T A symmetric positive definite (Higham 1986)
    n, k, batch, _, gen = p
    dtype = torch.float64
    a = randn((*batch, n, k), dtype, gen)
    h = orthonormalize(a, "polar").mT @ a
    assert torch.allclose(h, h.mT, atol=1e-10)
    assert bool((torch.linalg.eigvalsh(h) > 0).all())


def test_orthonormalize_cholesky_qr_falls_back_on_rank_deficient_input():
    a = torch.randn(3, 8, 3, dtype=torch.float64)
    a[1, :, 2] = a[1, :, 0]  # rank deficient: Cholesky of A^T A fails
    q = orthonormalize(a, "cholesky_qr")
    assert bool(torch.isfinite(q).all())
    assert orth_err(q) < 1e-12
    assert torch.allclose(q[0], orthonormalize(a[0], "qr"), atol=1e-10)


def test_orthonormalize_half_precision_is_computed_in_float32():
    a = torch.randn(5, 3).to(torch.bfloat16)
    q = orthonormalize(a)
    assert q.dtype == torch.bfloat16
    assert orth_err(q.float()) < 0.05


def test_orthonormalize_rejects_bad_input():
    with pytest.raises(ValueError, match=r"A must have at most as many columns.*k=4 > n=3"):
        orthonormalize(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"A must have at least one column.*k=0"):
        orthonormalize(torch.randn(3, 0))
    with pytest.raises(ValueError, match=r"A must be finite, got 1 NaN or infinite"):
        orthonormalize(torch.tensor([[1.0], [float("inf")]]))
    with pytest.raises(ValueError, match=r"method must be one of 'qr', 'polar', 'cholesky_qr'"):
        orthonormalize(torch.randn(3, 2), "svd")
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        orthonormalize([[1.0], [0.0]])


def test_orthonormalize_follows_device(device):
    a = torch.randn(4, 16, 3, device=device)
    for method in ("qr", "polar", "cholesky_qr"):
        q = orthonormalize(a, method)
        assert q.device.type == device.type
        assert orth_err(q) < 1e-4


# ------------------------------------------------------------------------------------------------
# the Stiefel class with geoopt optimisers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retraction", ["qr", "polar", "cayley", "expmap"])
def test_stiefel_with_riemannian_sgd_solves_procrustes(retraction):
    # min ||X - A||_F^2 over St(n, k) is solved by the polar factor of A
    torch.manual_seed(0)
    man = Stiefel(retraction=retraction)
    a = torch.randn(12, 4, dtype=torch.float64)
    x = geoopt.ManifoldParameter(man.random(12, 4, dtype=torch.float64), manifold=man)
    opt = geoopt.optim.RiemannianSGD([x], lr=0.2, momentum=0.5)
    for _ in range(80):
        opt.zero_grad()
        loss = ((x - a) ** 2).sum()
        loss.backward()
        opt.step()
    assert orth_err(x.detach()) < 1e-10
    assert torch.allclose(x.detach(), orthonormalize(a, "polar"), atol=1e-6)
    assert retraction in repr(man)


def test_stiefel_with_riemannian_adam_stays_on_manifold():
    torch.manual_seed(1)
    man = Stiefel(retraction="cayley")
    a = torch.randn(10, 3, dtype=torch.float64)
    x = geoopt.ManifoldParameter(man.random(10, 3, dtype=torch.float64), manifold=man)
    opt = geoopt.optim.RiemannianAdam([x], lr=0.05)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = ((x - a) ** 2).sum()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert orth_err(x.detach()) < 1e-10
    best = float(((orthonormalize(a, "polar") - a) ** 2).sum())
    assert float(loss.detach()) < best + 1e-3 < first


def test_stiefel_rejects_unknown_retraction():
    with pytest.raises(ValueError, match=r"retraction must be one of 'qr', 'polar', 'cayley'"):
        Stiefel(retraction="exp")
