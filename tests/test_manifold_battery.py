"""One battery that every manifold of the package runs, with each of its retractions.

What geoopt checks of its own manifolds (tests/test_manifold_basic.py, test_random.py,
test_origin.py, test_rsgd.py, test_adam.py, test_rlinesearch.py): projections idempotent and
tangent, retractions and transports, broadcasting over batches, expmap/logmap/dist, random points
and the origin, state-dict round trips of the optimisers, and convergence of RiemannianSGD,
RiemannianAdam and RiemannianLineSearch. What pymanopt checks of its Grassmann manifold
(tests/manifolds/test_grassmann.py) where it applies to geoopt's interface: dist = ||log||, the
retraction of a small step is ``x + u`` to second order, exp and log invert each other, inner
product and norm are Frobenius, ``dim``. Written for this package (nothing copied); optimum and
iterates are compared as subspaces (principal angles), never as matrices, wherever the manifold
is a Grassmannian or the optimum a subspace.

Grassmann's maps act on subspaces: points are compared through their projectors ``X X^T``.
Stiefel's logmap and dist are not implemented (geoopt's EuclideanStiefel has neither); the
battery checks that they say so.
"""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from grassmann import Grassmann, Stiefel, principal_angles
from grassmann.manifold import GRASSMANN_RETRACTIONS
from grassmann.stiefel import STIEFEL_RETRACTIONS
from tests.conftest import DTYPES, tol

CASES = [("grassmann", r) for r in GRASSMANN_RETRACTIONS] + [
    ("stiefel", r) for r in STIEFEL_RETRACTIONS
]
SHAPES = [(6, 2), (3, 9, 4), (2, 2, 5, 1)]


def make(kind: str, retraction: str) -> Grassmann | Stiefel:
    if kind == "grassmann":
        return Grassmann(retraction=retraction, check=False)
    return Stiefel(retraction=retraction)


@pytest.fixture(params=CASES, ids=[f"{k}-{r}" for k, r in CASES])
def man(request) -> Grassmann | Stiefel:
    return make(*request.param)


@pytest.fixture(params=SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def shape(request) -> tuple[int, ...]:
    return request.param


def is_grassmann(m) -> bool:
    return isinstance(m, Grassmann)


def point(m, shape, dtype=torch.float64, seed=0, device="cpu") -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return m.random(shape, dtype=dtype, device=device, generator=gen).as_subclass(torch.Tensor)


def gaussian(shape, dtype=torch.float64, seed=1, device="cpu") -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(shape, dtype=dtype, device=device, generator=gen)


def tangent(m, x, seed=1, scale=None) -> torch.Tensor:
    """A tangent vector at x; with ``scale`` its spectral norm is set to ``scale``."""
    u = m.proju(x, gaussian(x.shape, x.dtype, seed, x.device))
    if scale is not None:
        u = u * (scale / torch.linalg.matrix_norm(u, ord=2, keepdim=True).clamp_min(1e-300))
    return u


def orth_err(x) -> float:
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return float((x.mT @ x - eye).abs().max())


def tangent_err(m, x, u) -> float:
    """Grassmann: |X^T U| (horizontal); Stiefel: |X^T U + U^T X| (skew)."""
    xtu = x.mT @ u
    return float((xtu if is_grassmann(m) else xtu + xtu.mT).abs().max())


def same_point_err(m, a, b) -> float:
    """Grassmann: projector difference (the representative is free); Stiefel: matrices."""
    if is_grassmann(m):
        return float((a @ a.mT - b @ b.mT).abs().max())
    return float((a - b).abs().max())


# ------------------------------------------------------------------------------------------------
# points: random, origin, projx, checks, dim
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_random_points_lie_on_the_manifold_and_follow_dtype_and_device(man, shape, dtype, device):
    x = man.random(
        shape, dtype=dtype, device=device, generator=torch.Generator(device).manual_seed(0)
    )
    assert x.shape == shape and x.dtype == dtype and x.device.type == device.type
    assert isinstance(x, geoopt.ManifoldTensor) and x.manifold is man
    assert man.check_point_on_manifold(x, atol=10 * tol(dtype))
    assert orth_err(x) < 10 * tol(dtype)
    again = man.random(
        shape, dtype=dtype, device=device, generator=torch.Generator(device).manual_seed(0)
    )
    assert torch.equal(x, again)  # the generator decides
    other = man.random(shape, dtype=dtype, device=device)
    assert float((other - x).abs().max()) > 1e-3  # two draws differ (pymanopt)
    assert man.random(*shape, dtype=dtype, device=device).shape == shape


def test_random_points_are_uniformly_distributed(man):
    """Haar measure: E[X X^T] = (k / n) I, and the first column is uniform on the sphere."""
    n, k = 5, 2
    x = man.random(20000, n, k, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    eye = torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close((x @ x.mT).mean(0), k / n * eye, rtol=0, atol=0.02)
    c = x[..., 0]
    torch.testing.assert_close(c.mT @ c / len(c), eye / n, rtol=0, atol=0.02)


def test_origin_is_the_first_coordinate_vectors(man, shape, device):
    o = man.origin(shape, dtype=torch.float64, device=device)
    assert o.shape == shape and o.device.type == device.type and o.manifold is man
    assert man.check_point_on_manifold(o)
    torch.testing.assert_close(o[(0,) * (len(shape) - 2)].cpu(), torch.eye(*shape[-2:]).double())


def test_projx_lands_on_the_manifold_keeps_points_and_is_idempotent(man, shape):
    a = gaussian(shape)
    x = man.projx(a)
    assert man.check_point_on_manifold(x, atol=1e-12)
    torch.testing.assert_close(man.projx(x), x, rtol=0, atol=1e-12)
    p = point(man, shape)
    torch.testing.assert_close(man.projx(p), p, rtol=0, atol=1e-12)
    # batched = one by one (geoopt's broadcast check)
    flat = a.reshape(-1, *shape[-2:])
    per_item = torch.stack([man.projx(t) for t in flat]).reshape(shape)
    torch.testing.assert_close(x, per_item, rtol=0, atol=1e-12)


def test_point_and_tangent_checks_accept_and_reject(man):
    x = point(man, (7, 3))
    u = tangent(man, x)
    assert man.check_point_on_manifold(x)
    assert man.check_vector_on_tangent(x, u)
    assert not man.check_point_on_manifold(2 * x)
    assert not man.check_vector_on_tangent(x, x + u)
    assert not man.check_point(torch.zeros(2, 3))  # k > n
    assert man.check_point(torch.zeros(3, 2))


def test_dim_is_the_rank_of_the_tangent_projection(man):
    """``dim(n, k)`` equals the dimension of the tangent space that ``proju`` projects onto."""
    for n, k in [(5, 1), (6, 2), (7, 3), (4, 4)]:
        x = point(man, (n, k))
        basis = torch.eye(n * k, dtype=torch.float64).reshape(n * k, n, k)
        projected = man.proju(x.expand(n * k, n, k), basis).reshape(n * k, n * k)
        rank = int(torch.linalg.matrix_rank(projected, atol=1e-10))
        expected = k * (n - k) if is_grassmann(man) else n * k - k * (k + 1) // 2
        assert man.dim(n, k) == rank == expected
        assert man.dim(3, n, k) == man.dim((3, n, k)) == 3 * expected
    with pytest.raises(ValueError):
        man.dim(2, 3)


# ------------------------------------------------------------------------------------------------
# projection and metric
# ------------------------------------------------------------------------------------------------


def test_proju_is_the_orthogonal_projection_onto_the_tangent_space(man, shape):
    x = point(man, shape)
    g, h = gaussian(shape, seed=1), gaussian(shape, seed=2)
    u = man.proju(x, g)
    assert tangent_err(man, x, u) < 1e-13
    assert man.check_vector_on_tangent(x, u)
    torch.testing.assert_close(man.proju(x, u), u, rtol=0, atol=1e-13)  # idempotent
    torch.testing.assert_close(  # linear
        man.proju(x, 2.0 * g - 3.0 * h), 2.0 * u - 3.0 * man.proju(x, h), rtol=0, atol=1e-12
    )
    # orthogonal: the residual g - P g is orthogonal to every tangent vector
    w = man.proju(x, h)
    assert float(man.inner(x, g - u, w).abs().max()) < 1e-12
    torch.testing.assert_close(man.egrad2rgrad(x, g), u, rtol=0, atol=0)  # Euclidean metric
    if is_grassmann(man):  # pymanopt's formula
        torch.testing.assert_close(u, g - x @ (x.mT @ g), rtol=0, atol=1e-13)


def test_inner_is_frobenius_symmetric_and_matches_norm(man, shape):
    x = point(man, shape)
    u, v = tangent(man, x, 1), tangent(man, x, 2)
    torch.testing.assert_close(man.inner(x, u, v), (u * v).sum((-2, -1)))
    torch.testing.assert_close(man.inner(x, u, v), man.inner(x, v, u))
    torch.testing.assert_close(man.inner(x, u), man.norm(x, u) ** 2)
    torch.testing.assert_close(man.norm(x, u), torch.linalg.matrix_norm(u))
    assert man.inner(x, u, v, keepdim=True).shape == (*shape[:-2], 1, 1)


# ------------------------------------------------------------------------------------------------
# retraction
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.5, 3.0])
def test_retraction_lands_on_the_manifold(man, shape, dtype, scale):
    x = point(man, shape, dtype)
    y = man.retr(x, tangent(man, x, scale=scale))
    assert y.shape == shape and y.dtype == dtype
    assert orth_err(y) < 10 * tol(dtype)
    assert man.check_point_on_manifold(y, atol=10 * tol(dtype))


def test_retraction_at_zero_is_the_point(man, shape):
    x = point(man, shape)
    torch.testing.assert_close(man.retr(x, torch.zeros_like(x)), x, rtol=0, atol=1e-13)


def test_retraction_is_first_order(man):
    """``R_x(t u) = x + t u + O(t^2)``: the error shrinks 100x when t shrinks 10x (pymanopt
    checks ``R_x(1e-6 u) = x + 1e-6 u``); hence dR_x(0) = id."""
    x = point(man, (3, 9, 4))
    u = tangent(man, x, scale=1.0)
    errs = [float((man.retr(x, t * u) - x - t * u).abs().max()) for t in (1e-2, 1e-3)]
    assert errs[0] < 1e-3
    assert errs[1] < 2e-2 * errs[0]  # quadratic: ~1e-2 times smaller
    torch.testing.assert_close(man.retr(x, 1e-6 * u), x + 1e-6 * u, rtol=0, atol=1e-11)


def test_batched_retraction_equals_one_by_one(man, shape):
    x = point(man, shape)
    u = tangent(man, x, scale=0.7)
    y = man.retr(x, u)
    flat = zip(x.reshape(-1, *shape[-2:]), u.reshape(-1, *shape[-2:]), strict=True)
    per_item = torch.stack([man.retr(a, b) for a, b in flat]).reshape(shape)
    torch.testing.assert_close(y, per_item, rtol=0, atol=1e-12)
    # one point, a batch of steps: the point broadcasts
    many = torch.stack([tangent(man, x[(0,) * (len(shape) - 2)], s) for s in range(3)])
    y0 = man.retr(x[(0,) * (len(shape) - 2)], many)
    assert y0.shape == (3, *shape[-2:]) and orth_err(y0) < 1e-12


@pytest.mark.parametrize("threads", [1, 2])
def test_retraction_and_transport_are_differentiable(man, threads):
    """A differentiable step (meta-learning, implicit layers, RiemannianLineSearch).

    Regression: Grassmann's qr/polar wrote X + U with ``out=`` (and solved in place on one
    thread), which autograd refuses: ``retr`` of a ``u`` that requires grad raised. Entry 1 is
    a large step (Grassmann: a second Cholesky-QR/polar pass).
    """
    x = point(man, (2, 7, 3))
    u, v = tangent(man, x, 1, 0.6), tangent(man, x, 2)
    u[1] = tangent(man, x[1], 3, 50.0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            y0, tv0 = man.retr_transp(x, u, v)
        xg, ug, vg = (t.clone().requires_grad_() for t in (x, u, v))
        y, tv = man.retr_transp(xg, ug, vg)
        torch.testing.assert_close(y, y0, rtol=0, atol=1e-13)
        torch.testing.assert_close(tv, tv0, rtol=0, atol=1e-13)
        ((y * gaussian(y.shape, seed=5)).sum() + (tv**2).sum()).backward()
        assert all(bool(torch.isfinite(t.grad).all()) for t in (xg, ug, vg))

        def f(a):  # Grassmann: the projector, which does not depend on the representative
            r = man.retr(x[0], a)
            return r @ r.mT if is_grassmann(man) else r

        assert torch.autograd.gradcheck(f, (u[0].clone().requires_grad_(),))
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------
# transports
# ------------------------------------------------------------------------------------------------


def test_transport_is_tangent_at_the_new_point_and_linear(man, shape):
    x = point(man, shape)
    u, v, w = tangent(man, x, 1, 0.8), tangent(man, x, 2), tangent(man, x, 3)
    y, tv = man.retr_transp(x, u, v)
    torch.testing.assert_close(y, man.retr(x, u), rtol=0, atol=1e-14)
    torch.testing.assert_close(tv, man.transp_follow_retr(x, u, v), rtol=0, atol=1e-14)
    torch.testing.assert_close(tv, man.transp(x, y, v), rtol=0, atol=1e-13)
    assert tangent_err(man, y, tv) < 1e-13
    assert man.check_vector_on_tangent(y, tv)
    torch.testing.assert_close(  # linear in v
        man.transp(x, y, 2.0 * v - w), 2.0 * tv - man.transp(x, y, w), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(man.transp(x, x, v), v, rtol=0, atol=1e-13)  # identity at x
    ye, te = man.expmap_transp(x, u, v)
    assert tangent_err(man, ye, te) < 1e-12
    torch.testing.assert_close(te, man.transp_follow_expmap(x, u, v), rtol=0, atol=1e-14)


def test_batched_transport_equals_one_by_one(man, shape):
    x = point(man, shape)
    u, v = tangent(man, x, 1, 0.5), tangent(man, x, 2)
    tv = man.transp_follow_retr(x, u, v)
    items = zip(*(t.reshape(-1, *shape[-2:]) for t in (x, u, v)), strict=True)
    per_item = torch.stack([man.transp_follow_retr(a, b, c) for a, b, c in items])
    torch.testing.assert_close(tv, per_item.reshape(shape), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# exponential map, logarithm, distance
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 1e-6, 0.4, 1.5])
def test_expmap_lands_on_the_manifold_and_starts_with_velocity_u(man, shape, scale):
    x = point(man, shape)
    u = tangent(man, x, scale=scale)
    y = man.expmap(x, u)
    assert orth_err(y) < 1e-12 and man.check_point_on_manifold(y)
    h = 1e-5
    fd = (man.expmap(x, (1 + h) * u) - man.expmap(x, (1 - h) * u)) / (2 * h)
    # the curve t -> Exp(t u) at t = 1 moves with the parallel-transported u, of norm ||u||
    torch.testing.assert_close(man.norm(y, man.proju(y, fd)), man.norm(x, u), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(man.expmap(x, 0 * u), x, rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", [1e-8, 0.3, 1.0, 1.5])
def test_logmap_inverts_expmap_inside_the_injectivity_radius(man, shape, scale):
    """Grassmann: ||u||_2 < pi/2 (the injectivity radius); log(exp(u)) = u, dist = ||u||."""
    if not is_grassmann(man):
        with pytest.raises(NotImplementedError):
            man.logmap(*(point(man, shape, seed=s) for s in (0, 1)))
        pytest.skip("Stiefel (Euclidean metric) has no logmap in geoopt")
    x = point(man, shape)
    u = tangent(man, x, scale=scale)
    y = man.expmap(x, u)
    torch.testing.assert_close(man.logmap(x, y), u, rtol=0, atol=1e-12)
    torch.testing.assert_close(man.dist(x, y), man.norm(x, u), rtol=0, atol=1e-12)
    torch.testing.assert_close(man.logmap(x, x), torch.zeros_like(x), rtol=0, atol=1e-14)


def test_log_and_dist_of_any_pair_agree_and_exp_of_log_reaches_y(man, shape):
    """pymanopt: dist = ||log||, Exp_x(Log_x(y)) = y; and dist is symmetric."""
    if not is_grassmann(man):
        with pytest.raises(NotImplementedError):
            man.dist(*(point(man, shape, seed=s) for s in (0, 1)))
        pytest.skip("Stiefel (Euclidean metric) has no dist in geoopt")
    x, y = point(man, shape, seed=0), point(man, shape, seed=1)
    v = man.logmap(x, y)
    assert tangent_err(man, x, v) < 1e-13
    torch.testing.assert_close(man.norm(x, v), man.dist(x, y), rtol=0, atol=1e-12)
    assert same_point_err(man, man.expmap(x, v), y) < 1e-12
    torch.testing.assert_close(man.dist(x, y), man.dist(y, x), rtol=0, atol=1e-12)
    q = point(man, (*shape[:-2], shape[-1], shape[-1]), seed=2)  # a change of basis
    assert float(man.dist(x, x @ q).max()) < 1e-12


# ------------------------------------------------------------------------------------------------
# dtype and device
# ------------------------------------------------------------------------------------------------


def _outputs(m, x, y, u, v) -> dict[str, torch.Tensor]:
    out = {
        "proju": m.proju(x, u),
        "egrad2rgrad": m.egrad2rgrad(x, u),
        "projx": m.projx(x),
        "retr": m.retr(x, u),
        "retr_transp[0]": m.retr_transp(x, u, v)[0],
        "retr_transp[1]": m.retr_transp(x, u, v)[1],
        "transp": m.transp(x, y, v),
        "transp_follow_retr": m.transp_follow_retr(x, u, v),
        "expmap": m.expmap(x, u),
        "expmap_transp[1]": m.expmap_transp(x, u, v)[1],
        "inner": m.inner(x, u, v),
        "norm": m.norm(x, u),
    }
    if is_grassmann(m):
        out.update(logmap=m.logmap(x, y), dist=m.dist(x, y))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_every_map_keeps_dtype_and_device_no_type_promotion(man, dtype, device):
    x = point(man, (3, 8, 3), dtype, 0, device)
    y = point(man, (3, 8, 3), dtype, 1, device)
    u, v = tangent(man, x, 1, 0.5), tangent(man, x, 2)
    for name, out in _outputs(man, x, y, u, v).items():
        assert out.dtype == dtype, name
        assert out.device.type == device.type, name
        assert bool(torch.isfinite(out).all()), name


def test_mixing_dtypes_is_a_type_error_naming_the_argument(man):
    x = point(man, (8, 3), torch.float32)
    u64 = tangent(man, x, 1).double()
    for call in (man.proju, man.retr, man.expmap):
        with pytest.raises(TypeError, match=r"u must have the dtype of x \(torch.float32\)"):
            call(x, u64)
    with pytest.raises(TypeError, match=r"v must have the dtype of x \(torch.float32\)"):
        man.retr_transp(x, 0 * x, u64)
    with pytest.raises(TypeError, match=r"v must have the dtype of y \(torch.float32\)"):
        man.transp(x, x, u64)


# ------------------------------------------------------------------------------------------------
# geoopt's optimisers converge on every manifold
# ------------------------------------------------------------------------------------------------


def eigen_problem(n: int = 10, k: int = 3, seed: int = 0):
    """Symmetric C with an eigengap of at least 0.5 after the k-th eigenvalue; its top-k
    eigenspace is the unique maximiser of tr(X^T C X) on Gr(n, k) (the maximisers on St(n, k)
    are its orthonormal bases).

    Every optimiser here reaches its tolerance in under half the steps it is given (measured
    on every case: plain SGD 36 of 100, Nesterov 150 of 300, dampening 125 of 250, float32 34
    of 100, Adam 155 of 320, stabilize 82 of 160)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))[0]
    spectrum = torch.rand(n, dtype=torch.float64, generator=gen)
    spectrum[-k:] += 1.5
    c = (q * spectrum) @ q.T
    c = 0.5 * (c + c.T)
    return c, torch.linalg.eigh(c)[1][:, -k:]


def _minimise(m, make_opt, steps, *, closure_opt=False, dtype=torch.float64):
    c, top = eigen_problem()
    c = c.to(dtype)
    x = geoopt.ManifoldParameter(point(m, (10, 3), dtype, seed=1), manifold=m)
    opt = make_opt([x])

    def closure():
        opt.zero_grad()
        loss = -torch.trace(x.T @ c @ x)
        loss.backward()
        return float(loss.detach())

    for _ in range(steps):
        if closure_opt:
            opt.step(closure)
            # the loss is flat to rounding at the optimum (and scipy's Armijo search divides by
            # zero once the slope is ~1e-16): stop once the Riemannian gradient has vanished
            rgrad = m.egrad2rgrad(x.detach(), x.grad)
            if opt.last_step_size is None or float(rgrad.norm()) < 1e-7:
                break
        else:
            closure()
            opt.step()
    opt.load_state_dict(opt.state_dict())  # geoopt's round trip: state survives, step works
    if closure_opt:
        opt.step(closure)
    else:
        closure()
        opt.step()
    return x.detach(), top, opt


def test_optimiser_steps_are_the_same_on_one_and_two_cpu_threads(man):
    """The convergence tests below run on one CPU thread (conftest's one_cpu_thread), but some
    kernels compute differently on more ("qr" multiplies by R^-1 into a spare buffer instead of
    solving in place): 40 RiemannianSGD steps with Nesterov momentum, which transport the
    buffer every step, give the same iterates and buffers on one and on two threads."""
    c, _ = eigen_problem()
    lr = 0.1 / float(torch.linalg.matrix_norm(c, ord=2))
    runs = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x, _, opt = _minimise(
                man, lambda p: geoopt.optim.RiemannianSGD(p, lr=lr, momentum=0.9, nesterov=True), 40
            )
            runs.append((x, opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"]))
    finally:
        torch.set_num_threads(previous)
    (x1, b1), (x2, b2) = runs
    assert same_point_err(man, x1, x2) < 1e-13
    torch.testing.assert_close(b1, b2, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "steps"),
    [
        ({"momentum": 0.0}, 100),
        ({"momentum": 0.9, "nesterov": True}, 300),
        ({"momentum": 0.8, "dampening": 0.1}, 250),
    ],
    ids=["plain", "nesterov", "dampening"],
)
@pytest.mark.usefixtures("one_cpu_thread")
def test_riemannian_sgd_finds_the_top_eigenspace(man, params, steps):
    c, _ = eigen_problem()
    lr = (0.5 if params["momentum"] == 0 else 0.1) / float(torch.linalg.matrix_norm(c, ord=2))
    x, top, opt = _minimise(man, lambda p: geoopt.optim.RiemannianSGD(p, lr=lr, **params), steps)
    assert orth_err(x) < 1e-12
    assert float(principal_angles(x, top).max()) < 1e-6
    if params["momentum"]:
        assert (
            tangent_err(man, x, opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"])
            < 1e-10
        )


@pytest.mark.usefixtures("one_cpu_thread")
def test_riemannian_sgd_in_float32_finds_the_top_eigenspace(man):
    c, _ = eigen_problem()
    lr = 0.5 / float(torch.linalg.matrix_norm(c, ord=2))
    x, top, _ = _minimise(
        man, lambda p: geoopt.optim.RiemannianSGD(p, lr=lr), 100, dtype=torch.float32
    )
    assert x.dtype == torch.float32 and orth_err(x) < 1e-5
    assert float(principal_angles(x.double(), top, validate=False).max()) < 1e-3


@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
@pytest.mark.usefixtures("one_cpu_thread")
def test_riemannian_adam_finds_the_top_eigenspace(man, amsgrad):
    x, top, _ = _minimise(
        man, lambda p: geoopt.optim.RiemannianAdam(p, lr=0.05, amsgrad=amsgrad), 320
    )
    assert orth_err(x) < 1e-10
    assert float(principal_angles(x, top).max()) < 1e-3


@pytest.mark.parametrize(("method", "cg"), [("armijo", "steepest"), ("wolfe", "pr")])
@pytest.mark.filterwarnings("ignore:No suitable step size could be found")
@pytest.mark.usefixtures("one_cpu_thread")
def test_riemannian_line_search_finds_the_top_eigenspace(man, method, cg):
    """The line search retracts the parameter with autograd on (see the differentiable test)."""
    x, top, _ = _minimise(
        man,
        lambda p: geoopt.optim.RiemannianLineSearch(p, line_search_method=method, cg_method=cg),
        100,
        closure_opt=True,
    )
    assert orth_err(x) < 1e-12
    assert float(principal_angles(x, top).max()) < 1e-6


@pytest.mark.usefixtures("one_cpu_thread")
def test_stabilize_projects_back_onto_the_manifold(man):
    """geoopt's ``stabilize`` calls projx on the parameter; it must keep the optimum."""
    c, _ = eigen_problem()
    lr = 0.1 / float(torch.linalg.matrix_norm(c, ord=2))
    x, top, _ = _minimise(
        man, lambda p: geoopt.optim.RiemannianSGD(p, lr=lr, momentum=0.5, stabilize=7), 160
    )
    assert orth_err(x) < 1e-13
    assert float(principal_angles(x, top).max()) < 1e-6
    assert math.isfinite(float(x.sum()))
