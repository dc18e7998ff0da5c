"""Property tests of the Grassmann manifold: projections, maps, distance, transports, checks."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grassmann import Grassmann, orthonormalize
from grassmann.angles import principal_angles
from tests.conftest import DTYPES, tol

# ------------------------------------------------------------------------------------------------
# helpers (also imported by test_angles.py and test_stiefel.py)
# ------------------------------------------------------------------------------------------------


@st.composite
def problems(draw, max_n: int = 8, min_codim: int = 1, batches=((), (3,))):
    """(n, k, batch shape, dtype, generator) with ``1 <= k <= n - min_codim``."""
    n = draw(st.integers(1 + min_codim, max_n))
    k = draw(st.integers(1, n - min_codim))
    batch = draw(st.sampled_from(batches))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, k, batch, dtype, torch.Generator().manual_seed(seed)


def randn(shape, dtype, gen) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype, generator=gen)


def rand_point(shape, dtype, gen) -> torch.Tensor:
    return Grassmann().random(shape, dtype=dtype, generator=gen)


def rand_tangent(x: torch.Tensor, gen, scale: float | None = None) -> torch.Tensor:
    """Horizontal vector at x; with ``scale`` its spectral norm is set to ``scale``."""
    u = Grassmann().proju(x, randn(x.shape, x.dtype, gen))
    if scale is not None:
        u = u * (scale / torch.linalg.matrix_norm(u, ord=2, keepdim=True))
    return u


def rand_orthogonal(k: int, batch, dtype, gen) -> torch.Tensor:
    return Grassmann().random((*batch, k, k), dtype=dtype, generator=gen)


def eye(k: int, dtype) -> torch.Tensor:
    return torch.eye(k, dtype=dtype)


def orth_err(x: torch.Tensor) -> float:
    return float((x.mT @ x - eye(x.shape[-1], x.dtype)).abs().max())


def span_dist(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest principal angle between span x and span y."""
    return float(principal_angles(x, y, validate=False).max())


MAN = Grassmann()
RETRACTIONS = ["qr", "polar", "expmap"]

# ------------------------------------------------------------------------------------------------
# projections
# ------------------------------------------------------------------------------------------------


@given(problems(min_codim=0))
def test_proju_is_idempotent_and_horizontal(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    g = randn((*batch, n, k), dtype, gen)
    u = MAN.proju(x, g)
    assert torch.allclose(MAN.proju(x, u), u, atol=tol(dtype))
    assert float((x.mT @ u).abs().max()) < tol(dtype)
    assert torch.equal(MAN.egrad2rgrad(x, g), u)


@given(problems(min_codim=0))
def test_proju_maps_vertical_direction_to_zero(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    r = randn((*batch, k, k), dtype, gen)
    assert float(MAN.proju(x, x @ r).abs().max()) < tol(dtype)


@given(problems(min_codim=0))
def test_projx_lands_on_manifold_and_keeps_span(p):
    n, k, batch, dtype, gen = p
    a = randn((*batch, n, k), dtype, gen)
    x = MAN.projx(a)
    assert orth_err(x) < tol(dtype)
    # span unchanged: the residual of a after projecting onto span x vanishes
    assert float((a - x @ (x.mT @ a)).abs().max()) < 1e3 * tol(dtype)
    # points are fixed
    assert torch.allclose(MAN.projx(x), x, atol=tol(dtype))


@given(problems(min_codim=0))
def test_inner_is_frobenius_and_norm_matches(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    u, v = rand_tangent(x, gen), rand_tangent(x, gen)
    assert torch.allclose(MAN.inner(x, u, v), torch.einsum("...ij,...ij->...", u, v))
    assert MAN.inner(x, u, v, keepdim=True).shape == (*batch, 1, 1)
    assert torch.allclose(MAN.norm(x, u) ** 2, MAN.inner(x, u), rtol=1e3 * tol(dtype))
    assert MAN.component_inner(x, u).shape == (*batch, 1, 1)


# ------------------------------------------------------------------------------------------------
# retractions and the exponential map
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retraction", RETRACTIONS)
@settings(max_examples=15)
@given(p=problems(), scale=st.floats(0.0, 3.0))
def test_retraction_lands_on_manifold(retraction, p, scale):
    n, k, batch, dtype, gen = p
    man = Grassmann(retraction=retraction)
    x = rand_point((*batch, n, k), dtype, gen)
    y = man.retr(x, rand_tangent(x, gen, scale))
    assert orth_err(y) < 10 * tol(dtype)
    assert man.check_point_on_manifold(y, atol=10 * tol(dtype))


@pytest.mark.parametrize("retraction", RETRACTIONS)
@settings(max_examples=15)
@given(p=problems())
def test_retraction_at_zero_is_identity(retraction, p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    y = Grassmann(retraction=retraction).retr(x, torch.zeros_like(x))
    assert torch.allclose(y, x, atol=tol(dtype))


@pytest.mark.parametrize("retraction", RETRACTIONS)
@settings(max_examples=15)
@given(p=problems(batches=((),)))
def test_retraction_has_velocity_u_at_zero(retraction, p):
    n, k, batch, _, gen = p
    dtype = torch.float64  # finite differences need the digits
    man = Grassmann(retraction=retraction)
    x = rand_point((n, k), dtype, gen)
    u = rand_tangent(x, gen, 1.0)
    h = 1e-5
    fd = (man.retr(x, h * u) - man.retr(x, -h * u)) / (2 * h)
    assert torch.allclose(fd, u, atol=1e-8)


@given(p=problems(), scale=st.floats(0.0, 3.0))
def test_expmap_lands_on_manifold(p, scale):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    y = MAN.expmap(x, rand_tangent(x, gen, scale))
    assert orth_err(y) < 10 * tol(dtype)


@given(problems())
def test_expmap_at_zero_is_identity(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    assert torch.allclose(MAN.expmap(x, torch.zeros_like(x)), x, atol=tol(dtype))


@given(problems(batches=((),)))
def test_expmap_has_velocity_u_at_zero(p):
    n, k, _, _, gen = p
    dtype = torch.float64
    x = rand_point((n, k), dtype, gen)
    u = rand_tangent(x, gen, 1.0)
    h = 1e-5
    fd = (MAN.expmap(x, h * u) - MAN.expmap(x, -h * u)) / (2 * h)
    assert torch.allclose(fd, u, atol=1e-8)


@given(p=problems(), scale=st.floats(0.0, 1.45))
def test_logmap_inverts_expmap(p, scale):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, scale)  # ||u||_2 < pi/2: inside the injectivity radius
    v = MAN.logmap(x, MAN.expmap(x, u))
    assert torch.allclose(v, u, atol=100 * tol(dtype))


@given(p=problems(), scale=st.floats(0.0, 1.45))
def test_dist_of_expmap_equals_norm(p, scale):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, scale)
    d = MAN.dist(x, MAN.expmap(x, u))
    assert torch.allclose(d, MAN.norm(x, u), atol=100 * tol(dtype))


@given(problems(min_codim=0))
def test_expmap_of_logmap_spans_y(p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    u = MAN.logmap(x, y)
    assert float((x.mT @ u).abs().max()) < 10 * tol(dtype)
    assert span_dist(MAN.expmap(x, u), y) < 1e3 * tol(dtype) ** 0.75
    assert torch.allclose(MAN.norm(x, u), MAN.dist(x, y), atol=100 * tol(dtype))


@given(problems())
def test_logmap_of_same_subspace_is_zero(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    q = rand_orthogonal(k, batch, dtype, gen)
    assert float(MAN.logmap(x, x @ q).abs().max()) < 10 * tol(dtype)


@given(p=problems(min_codim=1), n_orth=st.integers(1, 8))
def test_logmap_where_xty_is_singular_is_finite_and_exp_spans_y(p, n_orth):
    n, k, batch, dtype, gen = p
    # y = [some directions inside/near x, directions orthogonal to x]: X^T Y is singular
    n = max(n, 2 * k)
    j = min(n_orth, k)
    z = rand_point((*batch, n, 2 * k), dtype, gen)
    x = z[..., :k]
    inside = x @ rand_orthogonal(k, batch, dtype, gen)
    y = torch.cat((inside[..., : k - j], z[..., k : k + j]), dim=-1)
    u = MAN.logmap(x, y)
    assert bool(torch.isfinite(u).all())
    assert span_dist(MAN.expmap(x, u), y) < 1e3 * tol(dtype) ** 0.75
    assert torch.allclose(MAN.norm(x, u), MAN.dist(x, y), atol=100 * tol(dtype))
    assert torch.allclose(MAN.dist(x, y), torch.full_like(MAN.dist(x, y), math.pi / 2 * j**0.5))


# ------------------------------------------------------------------------------------------------
# distance
# ------------------------------------------------------------------------------------------------


@given(problems(min_codim=0))
def test_dist_is_symmetric(p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    assert torch.allclose(MAN.dist(x, y), MAN.dist(y, x), atol=tol(dtype))
    assert MAN.dist(x, y, keepdim=True).shape == (*batch, 1, 1)


@given(problems())
def test_dist_is_zero_exactly_on_the_same_subspace(p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    q = rand_orthogonal(k, batch, dtype, gen)
    assert float(MAN.dist(x, x @ q).max()) < 10 * tol(dtype)
    assert float(MAN.dist(x, y).min()) > 0  # k < n: distinct random subspaces


@given(problems(min_codim=0))
def test_dist_is_invariant_under_basis_change_and_common_rotation(p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    qx, qy = rand_orthogonal(k, batch, dtype, gen), rand_orthogonal(k, batch, dtype, gen)
    rot = rand_orthogonal(n, batch, dtype, gen)
    d = MAN.dist(x, y)
    assert torch.allclose(MAN.dist(x @ qx, y @ qy), d, atol=100 * tol(dtype))
    assert torch.allclose(MAN.dist(rot @ x, rot @ y), d, atol=100 * tol(dtype))


@given(problems(min_codim=0))
def test_dist_obeys_triangle_inequality(p):
    n, k, batch, dtype, gen = p
    x, y, z = (rand_point((*batch, n, k), dtype, gen) for _ in range(3))
    lhs = MAN.dist(x, z)
    assert bool((lhs <= MAN.dist(x, y) + MAN.dist(y, z) + 10 * tol(dtype)).all())


# ------------------------------------------------------------------------------------------------
# transports
# ------------------------------------------------------------------------------------------------


@given(p=problems(), scale=st.floats(0.0, 3.0), t=st.floats(-2.0, 2.0))
def test_parallel_transport_preserves_inner_products_and_is_horizontal(p, scale, t):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, scale)
    v, w = rand_tangent(x, gen), rand_tangent(x, gen)
    tv, tw = MAN.parallel_transp(x, u, v, t), MAN.parallel_transp(x, u, w, t)
    y = MAN.expmap(x, t * u)
    assert float((y.mT @ tv).abs().max()) < 100 * tol(dtype)
    assert torch.allclose(MAN.inner(y, tv, tw), MAN.inner(x, v, w), atol=100 * tol(dtype))


@given(p=problems(), scale=st.floats(0.0, 3.0), t=st.floats(-2.0, 2.0))
def test_parallel_transport_carries_geodesic_velocity_to_itself(p, scale, t):
    n, k, batch, _, gen = p
    dtype = torch.float64
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, scale)
    h = 1e-5
    velocity = (MAN.expmap(x, (t + h) * u) - MAN.expmap(x, (t - h) * u)) / (2 * h)
    assert torch.allclose(MAN.parallel_transp(x, u, u, t), velocity, atol=1e-8)


@given(problems())
def test_parallel_transport_at_time_zero_is_identity(p):
    n, k, batch, dtype, gen = p
    x = rand_point((*batch, n, k), dtype, gen)
    u, v = rand_tangent(x, gen, 1.0), rand_tangent(x, gen)
    assert torch.allclose(MAN.parallel_transp(x, u, v, 0.0), v, atol=tol(dtype))
    y, tv = MAN.expmap_parallel_transp(x, u, v)
    assert torch.allclose(tv, MAN.parallel_transp(x, u, v), atol=tol(dtype))
    assert torch.allclose(y, MAN.expmap(x, u))


@pytest.mark.parametrize("retraction", RETRACTIONS)
@settings(max_examples=15)
@given(p=problems())
def test_vector_transport_by_projection_is_horizontal_at_new_point(retraction, p):
    n, k, batch, dtype, gen = p
    man = Grassmann(retraction=retraction)
    x = rand_point((*batch, n, k), dtype, gen)
    u, v = rand_tangent(x, gen, 0.5), rand_tangent(x, gen)
    for y, tv in (man.retr_transp(x, u, v), man.expmap_transp(x, u, v)):
        assert float((y.mT @ tv).abs().max()) < 10 * tol(dtype)
        assert torch.allclose(tv, man.transp(x, y, v))
    assert torch.allclose(man.transp_follow_retr(x, u, v), man.retr_transp(x, u, v)[1])
    assert torch.allclose(man.transp_follow_expmap(x, u, v), man.expmap_transp(x, u, v)[1])


@settings(max_examples=15)
@given(p=problems())
def test_expmap_retraction_of_any_u_equals_that_of_its_horizontal_part(p):
    """geoopt starts the momentum buffer from the raw Euclidean gradient: expmap projects it."""
    n, k, batch, dtype, gen = p
    man = Grassmann(retraction="expmap")
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, 0.5)
    vertical = x @ randn((*batch, k, k), dtype, gen)  # X^T (X A) = A != 0: not horizontal
    y = man.retr(x, u + vertical)
    assert orth_err(y) < 10 * tol(dtype)
    assert torch.allclose(y, man.retr(x, u), atol=10 * tol(dtype))
    y2, tv = man.retr_transp(x, u + vertical, u)
    assert torch.allclose(y2, y)
    assert float((y2.mT @ tv).abs().max()) < 10 * tol(dtype)
    assert torch.allclose(man.expmap(x, u + vertical), man.expmap(x, u), atol=10 * tol(dtype))


@pytest.mark.parametrize("retraction", ["qr", "polar"])
@settings(max_examples=15)
@given(p=problems())
def test_qr_polar_retraction_of_non_horizontal_u_is_the_factor_of_x_plus_u(retraction, p):
    """qr / polar use ``u`` as given: ``span(X + U)``, which is ``span(X)`` for ``U = X A``."""
    n, k, batch, dtype, gen = p
    man = Grassmann(retraction=retraction)
    x = rand_point((*batch, n, k), dtype, gen)
    u = rand_tangent(x, gen, 0.5)
    a = 0.3 * randn((*batch, k, k), dtype, gen) / math.sqrt(k)  # ||A||_2 < 1 (whp)
    y, tv = man.retr_transp(x, u + x @ a, u)
    assert orth_err(y) < 10 * tol(dtype)
    assert span_dist(y, x + u + x @ a) < 1e3 * tol(dtype)
    assert float((y.mT @ tv).abs().max()) < 10 * tol(dtype)
    assert span_dist(man.retr(x, x @ a), x) < 1e3 * tol(dtype)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def cpu_threads(request):
    """Run a test with 1 and with 2 torch CPU threads ("qr" computes differently on each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(threads)


@pytest.mark.parametrize("retraction", ["qr", "polar"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_qr_polar_retraction_where_x_plus_u_is_rank_deficient_uses_horizontal_part(
    retraction, dtype, cpu_threads
):
    """Only a non-horizontal ``u`` can make ``X + U`` singular; then ``U - X X^T U`` is used."""
    gen = torch.Generator().manual_seed(3)
    man = Grassmann(retraction=retraction, check=False)
    x = rand_point((4, 10, 3), dtype, gen)
    u = rand_tangent(x, gen, 0.5)
    bad = u.clone()
    bad[1] = -x[1]  # X + U = 0
    e1 = torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=dtype))
    bad[2] = u[2] - (x[2] + u[2]) @ e1  # X + U = [0, x_2 + u_2, x_3 + u_3]
    y, tv = man.retr_transp(x, bad, u)
    assert orth_err(y) < 10 * tol(dtype)
    assert torch.allclose(y[[0, 3]], man.retr(x[[0, 3]], u[[0, 3]]), atol=10 * tol(dtype))
    assert span_dist(y[1], x[1]) < 1e3 * tol(dtype)
    assert span_dist(y[2], man.retr(x[2], man.proju(x[2], bad[2]))) < 1e3 * tol(dtype)
    assert float((y.mT @ tv).abs().max()) < 10 * tol(dtype)


def _anisotropic_step(x: torch.Tensor, gen, norm: float) -> torch.Tensor:
    """Horizontal step with one singular value ``norm`` and the others 1e-3 * ``norm``."""
    p, _, vh = torch.linalg.svd(rand_tangent(x, gen), full_matrices=False)
    s = torch.full(p.shape[:-2] + p.shape[-1:], 1e-3 * norm, dtype=x.dtype)
    s[..., 0] = norm
    return (p * s.unsqueeze(-2)) @ vh


@pytest.mark.parametrize("retraction", ["qr", "polar"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("norm", [0.1, 3.0, 100.0, 1e4])
def test_large_anisotropic_step_stays_orthonormal_and_spans_x_plus_u(
    retraction, dtype, norm, cpu_threads
):
    """One Cholesky-QR/polar pass loses eps * cond(I + U^T U); the second pass restores it."""
    gen = torch.Generator().manual_seed(0)
    man = Grassmann(retraction=retraction, check=False)
    x = rand_point((20, 64, 6), dtype, gen)
    u = _anisotropic_step(x, gen, norm)
    y, tv = man.retr_transp(x, u, u)
    bound = 2e-6 if dtype == torch.float32 else 1e-14
    assert orth_err(y) < bound
    assert span_dist(y, torch.linalg.qr(x + u)[0]) < 1e3 * tol(dtype) ** 0.75
    assert float((y.mT @ tv).abs().max()) < 10 * tol(dtype) * norm


@pytest.mark.parametrize("retraction", RETRACTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_retr_transp_is_the_same_on_one_and_two_threads_and_leaves_inputs_alone(retraction, dtype):
    """With one CPU thread "qr" solves in place, with more it multiplies (and reuses a buffer)."""
    gen = torch.Generator().manual_seed(2)
    man = Grassmann(retraction=retraction, check=False)
    x = rand_point((30, 24, 4), dtype, gen).mT.contiguous().mT  # GrassmannHead's layout
    v = rand_tangent(x, gen)
    u = -0.3 * v
    u[0] = 0.2 * rand_tangent(x[0], gen, 1e3)  # one large step: a second pass on entry 0
    inputs = [t.clone() for t in (x, u, v)]
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            results.append((*man.retr_transp(x, u, v), man.retr(x, u)))
    finally:
        torch.set_num_threads(threads)
    for t, t0 in zip((x, u, v), inputs, strict=True):
        assert torch.equal(t, t0)
    (y1, tv1, r1), (y2, tv2, r2) = results
    eps = torch.finfo(dtype).eps
    for a, b in ((y1, y2), (tv1, tv2), (r1, r2), (y1, r1)):
        torch.testing.assert_close(a, b, rtol=0, atol=100 * eps)
    assert orth_err(y1) < 100 * eps
    assert float((y1.mT @ tv1).abs().max()) < 100 * eps * float(v.abs().max())
    assert y1.mT.is_contiguous() and tv1.mT.is_contiguous()  # column-major, like x
    assert tv1.untyped_storage().data_ptr() != y1.untyped_storage().data_ptr()


@pytest.mark.parametrize("retraction", RETRACTIONS)
def test_retraction_gives_the_same_point_for_row_and_column_major_layouts(retraction):
    gen = torch.Generator().manual_seed(1)
    man = Grassmann(retraction=retraction, check=False)
    x = rand_point((5, 40, 4), torch.float64, gen)
    u, v = rand_tangent(x, gen, 1.0), rand_tangent(x, gen)
    col = [t.mT.contiguous().mT for t in (x, u, v)]  # (C, n, k) views of (C, k, n) tensors
    y_row, tv_row = man.retr_transp(x, u, v)
    y_col, tv_col = man.retr_transp(*col)
    torch.testing.assert_close(y_row, y_col, rtol=0, atol=1e-13)
    torch.testing.assert_close(tv_row, tv_col, rtol=0, atol=1e-13)
    torch.testing.assert_close(man.proju(x, v), man.proju(col[0], col[2]), rtol=0, atol=1e-13)


@pytest.mark.parametrize("retraction", ["qr", "polar"])
def test_rank_repair_is_differentiable_and_finite(retraction):
    """X + U = 0 (a non-horizontal u): the repaired retraction has finite gradients."""
    gen = torch.Generator().manual_seed(5)
    man = Grassmann(retraction=retraction, check=False)
    x = rand_point((3, 6, 2), torch.float64, gen)
    u = rand_tangent(x, gen, 0.5)
    u[1] = u[1] - x[1] - u[1]  # X + U = 0 on entry 1
    with torch.no_grad():
        y0 = man.retr(x, u)
    ug = u.clone().requires_grad_()
    y = man.retr(x, ug)
    torch.testing.assert_close(y, y0, rtol=0, atol=1e-12)
    (y**3).sum().backward()
    assert bool(torch.isfinite(ug.grad).all())


@pytest.mark.parametrize("retraction", RETRACTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_riemannian_sgd_with_momentum_stays_orthonormal(retraction, dtype):
    """geoopt starts the momentum buffer from the raw (non-horizontal) Euclidean gradient.

    Regression: with ``retraction="expmap"`` the exponential map of that non-horizontal step
    left the manifold (max |S^T S - I| ~ 5e-2 after 10 steps); retr/retr_transp now project.
    """
    gen = torch.Generator().manual_seed(0)
    man = Grassmann(retraction=retraction, check=False)
    a = randn((12, 12), dtype, gen)
    a = a @ a.mT
    w = geoopt.ManifoldParameter(man.random(4, 12, 3, dtype=dtype, generator=gen), manifold=man)
    opt = geoopt.optim.RiemannianSGD([w], lr=0.05, momentum=0.9, weight_decay=0.1)
    for _ in range(50):
        opt.zero_grad()
        (-(w * (a @ w)).sum()).backward()
        opt.step()
    assert orth_err(w.detach()) < (1e-5 if dtype == torch.float32 else 1e-10)
    assert float(torch.linalg.matrix_norm(opt.state[w]["momentum_buffer"])[0]) > 0


def test_expmap_retraction_does_not_drift_off_the_manifold_without_stabilize():
    """Regression: RiemannianSGD (lr 1e-2, 20 x 10, float32, no ``stabilize``) with
    ``retraction="expmap"`` let max |X^T X - I| grow from 9e-6 (100 steps) to 2.1e-4 (10^4
    steps), and the distance to the optimum with it; qr stayed at 2e-7.

    Now each map costs about one ulp and the basis is repaired above 16 ulps: the error stays
    bounded at every step, and the subspace converges like qr's."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(20, 20, dtype=torch.float64, generator=gen)
    c = (a @ a.T / 20).float()
    top = torch.linalg.eigh(c.double())[1][:, -10:]
    man = Grassmann(retraction="expmap", check=False)
    w = geoopt.ManifoldParameter(man.random(20, 10, dtype=torch.float32, generator=gen), man)
    opt = geoopt.optim.RiemannianSGD([w], lr=1e-2, momentum=0.9)
    worst = 0.0
    for _ in range(600):
        opt.zero_grad()
        (-(w * (c @ w)).sum()).backward()
        opt.step()
        worst = max(worst, orth_err(w.detach().double()))
    assert worst < 32 * torch.finfo(torch.float32).eps  # 16 ulps, measured in float64
    assert span_dist(w.detach().double(), top) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_expmap_repairs_a_drifted_basis_and_keeps_its_span(dtype):
    """A basis 1e-4 (float32: 1e-3) off orthonormal comes back orthonormal, spanning the same
    subspace as the unrepaired map (only its representative changes)."""
    gen = torch.Generator().manual_seed(6)
    x = rand_point((5, 12, 3), torch.float64, gen)
    drift = 1e-3 if dtype == torch.float32 else 1e-4
    x = (x @ (eye(3, torch.float64) + drift * randn((5, 3, 3), torch.float64, gen))).to(dtype)
    x[2] = orthonormalize(x[2].double()).to(dtype)  # one entry needs no repair
    u = MAN.proju(x, 0.3 * randn(x.shape, dtype, gen))
    y = MAN.expmap(x, u)
    eps = torch.finfo(dtype).eps
    assert orth_err(y.double()) < 32 * eps
    # the unrepaired map, in float64: X V cos(S) V^T + U V sinc(S) V^T of the horizontal part
    # of u that expmap uses (at a drifted x, projecting u once more changes it a little)
    x64, u64 = x.double(), MAN.proju(x, u).double()
    lam, vecs = torch.linalg.eigh(u64.mT @ u64)
    s = lam.clamp_min(0).sqrt()
    raw = (
        x64 @ (vecs * torch.cos(s)[..., None, :]) @ vecs.mT
        + u64 @ (vecs * torch.sinc(s / math.pi)[..., None, :]) @ vecs.mT
    )
    assert span_dist(y.double(), orthonormalize(raw)) < (1e-5 if dtype == torch.float32 else 1e-12)


# ------------------------------------------------------------------------------------------------
# sampling, geoopt checks
# ------------------------------------------------------------------------------------------------


def test_random_shapes_dtype_generator_and_orthonormality():
    man = Grassmann()
    assert man.random(5, 2).shape == (5, 2)
    assert man.random(3, 5, 2).shape == (3, 5, 2)
    assert man.random((3, 5, 2)).shape == (3, 5, 2)
    x = man.random(4, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = man.random(4, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert x.dtype == torch.float64 and torch.equal(x, y)
    assert isinstance(x, geoopt.ManifoldTensor) and x.manifold is man
    assert orth_err(x) < 1e-12


def test_random_is_rotation_invariant_on_average():
    # E[X X^T] = (k / n) I for the Haar measure; a non-uniform sampler (e.g. without the
    # QR sign fix on the first columns) would not be isotropic in this way.
    n, k = 5, 2
    x = Grassmann().random(
        20000, n, k, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    mean = (x @ x.mT).mean(0)
    assert torch.allclose(mean, k / n * torch.eye(n, dtype=torch.float64), atol=0.02)
    # first column: E[x_1 x_1^T] = I / n as well
    c = x[..., 0]
    assert torch.allclose(c.mT @ c / len(c), torch.eye(n, dtype=torch.float64) / n, atol=0.02)


def test_origin_is_first_coordinate_vectors():
    o = Grassmann().origin(2, 4, 2, dtype=torch.float64)
    assert o.shape == (2, 4, 2)
    assert torch.equal(o[0], torch.eye(4, 2, dtype=torch.float64))


def test_geoopt_checks_accept_points_and_tangents_and_reject_others():
    man = Grassmann()
    x = man.random(6, 2, dtype=torch.float64)
    u = rand_tangent(x, torch.Generator().manual_seed(0))
    assert man.check_point_on_manifold(x)
    ok, reason = man.check_point_on_manifold(2 * x, explain=True)
    assert not ok and "X^T X" in reason
    assert man.check_vector_on_tangent(x, u)
    ok, reason = man.check_vector_on_tangent(x, x, explain=True)
    assert not ok and "X^T U" in reason
    ok, reason = man.check_point(torch.zeros(2, 3), explain=True)
    assert not ok and "k <= n" in reason
    ok, reason = man.check_point(torch.zeros(3), explain=True)
    assert not ok and "2 dimensions" in reason
    p = geoopt.ManifoldParameter(x, manifold=man)
    assert p.manifold is man
    assert "retraction='qr'" in repr(man)


def test_maps_follow_device_and_dtype(device, dtype):
    man = Grassmann()
    gen = torch.Generator(device=device).manual_seed(0)
    x = man.random(4, 9, 3, dtype=dtype, device=device, generator=gen)
    y = man.random(4, 9, 3, dtype=dtype, device=device, generator=gen)
    assert x.device.type == device.type and x.dtype == dtype
    u = man.logmap(x, y)
    for out in (
        u,
        man.expmap(x, u),
        man.retr(x, u),
        man.transp(x, y, u),
        man.parallel_transp(x, u, u),
        man.dist(x, y),
        man.projx(x),
    ):
        assert out.device.type == device.type and out.dtype == dtype
    assert torch.allclose(
        man.dist(man.expmap(x, u), y),
        torch.zeros(4, dtype=dtype, device=device),
        atol=1e3 * tol(dtype),
    )


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_random_rejects_k_greater_than_n_and_k_zero():
    with pytest.raises(ValueError, match=r"k <= n.*k=5 > n=3"):
        Grassmann().random(3, 5)
    with pytest.raises(ValueError, match=r"k >= 1.*k=0"):
        Grassmann().random(3, 0)


def test_bad_points_raise_value_error_naming_the_argument():
    man = Grassmann()
    x = man.random(6, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y must have at most as many columns.*k=7 > n=6"):
        man.dist(x, torch.randn(6, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have at least one column.*k=0"):
        man.logmap(torch.zeros(6, 0, dtype=torch.float64), x)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"y must be finite, got 1 NaN or infinite"):
        man.logmap(x, bad)
    with pytest.raises(ValueError, match=r"x and y must have the same number of rows n.*n=6.*n=5"):
        man.dist(x, man.random(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"same number of columns k"):
        man.dist(x, man.random(6, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"y must have orthonormal columns.*max \|X\^T X - I\|"):
        man.dist(x, 3 * x)
    with pytest.raises(ValueError, match=r"x must have orthonormal columns"):
        man.parallel_transp(2 * x, x, x)
    with pytest.raises(ValueError, match=r"retraction must be one of 'qr', 'polar', 'expmap'"):
        Grassmann(retraction="cayley")
    with pytest.raises(TypeError, match="check must be a bool"):
        Grassmann(check=1)


def test_check_false_skips_value_checks():
    man = Grassmann(check=False)
    x = man.random(6, 2, dtype=torch.float64)
    assert torch.isfinite(man.dist(x, 1.0000001 * x)).all()
    with pytest.raises(ValueError, match="k <= n"):  # shapes are still checked
        man.dist(x, torch.randn(2, 3, dtype=torch.float64))


_SHAPE = r"must have the shape \(\.\.\., n, k\) of the point"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, x: m.proju(x, torch.zeros(6, 2)), rf"u {_SHAPE} x"),
        (lambda m, x: m.egrad2rgrad(x, torch.zeros(5, 3)), rf"u {_SHAPE} x"),
        (lambda m, x: m.retr(x, torch.zeros(6, 2)), rf"u {_SHAPE} x"),
        (lambda m, x: m.expmap(x, torch.zeros(5, 3)), r"got \(5, 3\)"),
        (lambda m, x: m.transp(x, x, torch.zeros(5, 1)), rf"v {_SHAPE} y"),
        (lambda m, x: m.retr_transp(x, x * 0, torch.zeros(4, 2)), r"v must have"),
    ],
    ids=["proju", "egrad2rgrad", "retr", "expmap", "transp", "retr_transp"],
)
def test_hot_path_rejects_mismatched_shapes_with_value_error(call, match):
    man = Grassmann()
    x = man.random(5, 2, dtype=torch.float64).as_subclass(torch.Tensor).float()
    with pytest.raises(ValueError, match=match):
        call(man, x)


def test_random_rejects_bad_sizes_and_dtypes():
    man = Grassmann()
    with pytest.raises(TypeError, match=r"size\[0\] must be an integer, got 3.5"):
        man.random(3.5, 2)
    with pytest.raises(ValueError, match=r"size\[0\] must be >= 1, got -3"):
        man.random(-3, 2)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        man.random(4, 2, dtype=torch.float16)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        man.origin(4, 2, dtype=torch.int64)


_MIXED_DTYPE_CALLS = {
    "logmap": (lambda m, a, b: m.logmap(a, b), "y"),
    "dist": (lambda m, a, b: m.dist(a, b), "y"),
    "retr": (lambda m, a, b: m.retr(a, m.proju(b, b)), "u"),
    "retr_transp_u": (lambda m, a, b: m.retr_transp(a, 0 * b, 0 * a), "u"),
    "retr_transp_v": (lambda m, a, b: m.retr_transp(a, 0 * a, 0 * b), "v"),
    "proju": (lambda m, a, b: m.proju(a, b), "u"),
    "egrad2rgrad": (lambda m, a, b: m.egrad2rgrad(a, b), "u"),
    "expmap": (lambda m, a, b: m.expmap(a, 0 * b), "u"),
    "transp": (lambda m, a, b: m.transp(a, a, 0 * b), "v"),
    "transp_start": (lambda m, a, b: m.transp(b, a, 0 * a), "x"),
    "parallel_transp": (lambda m, a, b: m.parallel_transp(a, 0 * a, 0 * b), "v"),
}


@pytest.mark.parametrize("call", sorted(_MIXED_DTYPE_CALLS))
@pytest.mark.parametrize("first", [torch.float32, torch.float64], ids=["x32", "x64"])
def test_mixed_dtypes_raise_type_error_naming_the_argument(call, first):
    """Regression: logmap(float32, float64) raised torch's RuntimeError from a matmul, and
    retr with the same mix silently returned float32 (the dtype of an ``out=`` buffer)."""
    fn, name = _MIXED_DTYPE_CALLS[call]
    point = "y" if call.startswith("transp") else "x"  # transp(x, y, v) checks against y
    other = torch.float64 if first == torch.float32 else torch.float32
    x = MAN.random(6, 2, dtype=first, generator=torch.Generator().manual_seed(0))
    y = MAN.random(6, 2, dtype=other, generator=torch.Generator().manual_seed(1))
    match = rf"{name} must have the dtype of {point} \({first}\), got {other}"
    with pytest.raises(TypeError, match=match):
        fn(MAN, x, y)


def test_tensors_on_different_devices_raise_value_error_naming_the_argument():
    """Checked from the tensors' attributes, before any computation ("meta" needs no GPU)."""
    x = MAN.random(6, 2, dtype=torch.float64)
    elsewhere = torch.empty(6, 2, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"u must be on the device of x \(cpu\), got meta"):
        MAN.retr(x, elsewhere)
    with pytest.raises(ValueError, match=r"v must be on the device of x \(cpu\), got meta"):
        MAN.retr_transp(x, torch.zeros_like(x), elsewhere)
    with pytest.raises(ValueError, match=r"y must be on the device of x \(cpu\), got meta"):
        Grassmann(check=False).logmap(x, elsewhere)


@pytest.mark.parametrize("sampler", ["random", "origin"])
def test_samplers_reject_devices_that_do_not_exist_here(sampler):
    """Regression: random(..., device="cuda") without CUDA raised torch's AssertionError."""
    sample = getattr(Grassmann(), sampler)
    with pytest.raises(ValueError, match=r"device must be an available torch device.*'gpu0'"):
        sample(4, 2, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device must be .*CUDA is not available.*'cuda'"):
            sample(4, 2, device="cuda")
    else:
        with pytest.raises(ValueError, match=r"device must be an available torch device"):
            sample(4, 2, device=f"cuda:{torch.cuda.device_count()}")
