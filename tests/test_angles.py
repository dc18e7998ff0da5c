"""Principal angles, subspace distances and the Karcher mean."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grassmann import Grassmann, karcher_mean, principal_angles, subspace_distance
from grassmann.angles import SUBSPACE_METRICS
from tests.conftest import tol
from tests.test_accuracy_reference import mp_matrix, mp_orthonormal, mp_principal_angles
from tests.test_manifold import orth_err, problems, rand_orthogonal, rand_point, rand_tangent, randn

MAN = Grassmann()


def pair_with_angles(n: int, theta: torch.Tensor, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """X, Y (n x k) whose principal angles are exactly ``theta`` (up to one rounding of Y)."""
    k = theta.shape[-1]
    z = rand_point((n, 2 * k), theta.dtype, gen)
    x = z[:, :k]
    y = z[:, :k] * torch.cos(theta) + z[:, k:] * torch.sin(theta)
    q1, q2 = rand_orthogonal(k, (), theta.dtype, gen), rand_orthogonal(k, (), theta.dtype, gen)
    return x @ q1, y @ q2


@given(p=problems(min_codim=1), k2=st.integers(1, 8))
def test_principal_angles_agree_with_scipy(p, k2):
    # k1 + k2 <= n: no forced intersection. (Where k1 + k2 > n, k1 + k2 - n angles are exactly
    # zero and scipy's arccos branch returns ~1e-8 there; see the next test.)
    n, k1, batch, _, gen = p
    dtype = torch.float64
    k2 = max(1, min(k2, n - k1))
    a, b = rand_point((*batch, n, k1), dtype, gen), rand_point((*batch, n, k2), dtype, gen)
    theta = principal_angles(a, b)
    assert theta.shape == (*batch, min(k1, k2))
    a2, b2 = a.reshape(-1, n, k1).numpy(), b.reshape(-1, n, k2).numpy()
    ref = np.stack(
        [np.sort(scipy.linalg.subspace_angles(u, v)) for u, v in zip(a2, b2, strict=True)]
    )
    np.testing.assert_allclose(theta.reshape(-1, min(k1, k2)).numpy(), ref, rtol=0, atol=1e-12)


@given(problems(min_codim=0))
def test_principal_angles_of_intersecting_subspaces_are_zero(p):
    n, k, batch, dtype, gen = p
    a, b = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, n - k + 1), dtype, gen)
    # dim(span a intersect span b) >= k + (n - k + 1) - n = 1
    assert float(principal_angles(a, b)[..., 0].max()) < 10 * tol(dtype)


@given(p=problems(min_codim=0), k2=st.integers(1, 8))
def test_principal_angles_are_ascending_in_zero_to_half_pi(p, k2):
    n, k1, batch, dtype, gen = p
    k2 = min(k2, n)
    a, b = rand_point((*batch, n, k1), dtype, gen), rand_point((*batch, n, k2), dtype, gen)
    theta = principal_angles(a, b)
    assert bool((theta[..., 1:] >= theta[..., :-1]).all())
    assert bool((theta >= 0).all()) and bool((theta <= math.pi / 2).all())
    assert torch.allclose(theta, principal_angles(b, a), atol=tol(dtype))


@given(
    n_extra=st.integers(0, 6),
    log_angles=st.lists(st.floats(-10.0, 0.19), min_size=1, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_principal_angles_are_relatively_accurate_down_to_1e_minus_10(n_extra, log_angles, seed):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.tensor(sorted(10.0**e for e in log_angles), dtype=torch.float64)  # <= ~1.55
    k = len(theta)
    x, y = pair_with_angles(2 * k + n_extra, theta, gen)
    got = principal_angles(x, y)
    torch.testing.assert_close(got, theta, rtol=1e-6, atol=0)


def test_principal_angles_of_known_pair_in_float32_are_accurate():
    gen = torch.Generator().manual_seed(0)
    theta = torch.tensor([1e-5, 1e-3, 0.3, 1.2], dtype=torch.float64)
    x, y = pair_with_angles(12, theta, gen)
    got = principal_angles(x.float(), y.float(), validate=False)
    torch.testing.assert_close(got.double(), theta, rtol=0.05, atol=1e-6)


@given(p=problems(min_codim=0, batches=((),)), k2=st.integers(1, 8))
def test_principal_angles_orthonormalize_inputs_match_a_50_digit_reference(p, k2):
    """General (non-orthonormal) matrices, against mpmath at 50 digits; scipy where it is exact.

    Where k1 + k2 > n, k1 + k2 - n angles are exactly 0: scipy 1.17 returns up to ~3e-8 for
    them (it takes those from arccos of cosines that round to 1), this package ~1e-15, so
    scipy is only a reference for angles above 1e-6 (and with atol 1e-10, its own accuracy).
    """
    n, k1, _, _, gen = p
    k2 = min(k2, n)
    dtype = torch.float64
    a, b = randn((n, k1), dtype, gen), randn((n, k2), dtype, gen)
    theta = principal_angles(a, b, orthonormalize_inputs=True)
    with mpmath.workdps(50):
        ref = mp_principal_angles(mp_orthonormal(mp_matrix(a)), mp_orthonormal(mp_matrix(b)))
        ref = torch.tensor([float(t) for t in ref], dtype=dtype)
    torch.testing.assert_close(theta, ref, rtol=0, atol=1e-13)  # measured: <= 1.7e-15
    scipy_ref = torch.from_numpy(np.sort(scipy.linalg.subspace_angles(a.numpy(), b.numpy())))
    large = ref > 1e-6
    torch.testing.assert_close(theta[large], scipy_ref[large], rtol=0, atol=1e-10)


def test_principal_angles_broadcast_over_leading_dimensions():
    x = MAN.random(4, 1, 9, 3, dtype=torch.float64)
    y = MAN.random(5, 9, 2, dtype=torch.float64)
    theta = principal_angles(x, y)
    assert theta.shape == (4, 5, 2)
    torch.testing.assert_close(theta[2, 3], principal_angles(x[2, 0], y[3]))


def test_principal_angles_are_differentiable_where_distinct():
    gen = torch.Generator().manual_seed(3)
    x, y = pair_with_angles(9, torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64), gen)
    z = rand_tangent(y, gen, 1.0).requires_grad_(True)

    def f(t):  # angles along a curve through y, kept orthonormal
        return principal_angles(x, y + 1e-3 * t, orthonormalize_inputs=True)

    assert torch.autograd.gradcheck(f, (z,), atol=1e-7)
    # gradient of the geodesic distance is finite also near 0 and pi/2
    y0 = y.clone().requires_grad_(True)
    d = torch.linalg.vector_norm(principal_angles(x, y0, validate=False))
    d.backward()
    assert bool(torch.isfinite(y0.grad).all())


# ------------------------------------------------------------------------------------------------
# distances
# ------------------------------------------------------------------------------------------------


@given(problems(min_codim=0))
def test_chordal_distance_equals_projector_difference_over_sqrt2(p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    diff = x @ x.mT - y @ y.mT
    ref = torch.linalg.matrix_norm(diff) / math.sqrt(2)
    assert torch.allclose(subspace_distance(x, y, "chordal"), ref, atol=10 * tol(dtype))
    ref2 = torch.linalg.matrix_norm(diff, ord=2)
    assert torch.allclose(subspace_distance(x, y, "projection"), ref2, atol=10 * tol(dtype))


@given(problems(min_codim=0))
def test_distances_match_their_closed_forms(p):
    n, k, batch, _, gen = p
    dtype = torch.float64
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    theta = principal_angles(x, y)
    det = torch.linalg.det(x.mT @ y).abs()
    # Procrustes: min_Q ||X - Y Q||_F, attained at the polar factor of Y^T X
    u, _, vh = torch.linalg.svd(y.mT @ x)
    procrustes = torch.linalg.matrix_norm(x - y @ (u @ vh))
    refs = {
        "geodesic": MAN.dist(x, y),
        "binet_cauchy": (1 - det**2).clamp_min(0).sqrt(),
        "fubini_study": torch.acos(det.clamp(max=1.0)),
        "procrustes": procrustes,
        "asimov": theta[..., -1],
    }
    for metric, ref in refs.items():
        got = subspace_distance(x, y, metric)
        assert torch.allclose(got, ref, atol=1e-7), metric


@pytest.mark.parametrize("metric", SUBSPACE_METRICS)
@settings(max_examples=15)
@given(p=problems())
def test_every_distance_is_symmetric_zero_on_same_subspace_and_positive_otherwise(metric, p):
    n, k, batch, dtype, gen = p
    x, y = rand_point((*batch, n, k), dtype, gen), rand_point((*batch, n, k), dtype, gen)
    q = rand_orthogonal(k, batch, dtype, gen)
    dxy = subspace_distance(x, y, metric)
    assert torch.allclose(dxy, subspace_distance(y, x, metric), atol=10 * tol(dtype))
    assert float(subspace_distance(x, x @ q, metric).max()) < 10 * tol(dtype) ** 0.5
    assert float(dxy.min()) > 0


def test_small_angle_distances_keep_relative_accuracy():
    gen = torch.Generator().manual_seed(5)
    theta = torch.tensor([1e-9, 2e-9, 3e-9], dtype=torch.float64)
    x, y = pair_with_angles(10, theta, gen)
    norm = float(torch.linalg.vector_norm(theta))
    for metric in ("geodesic", "chordal", "procrustes", "binet_cauchy", "fubini_study"):
        got = float(subspace_distance(x, y, metric))
        assert got == pytest.approx(norm, rel=1e-5), metric


# ------------------------------------------------------------------------------------------------
# Karcher mean
# ------------------------------------------------------------------------------------------------


@given(p=problems(batches=((),)), m=st.integers(1, 6), spread=st.floats(0.0, 0.5))
def test_karcher_mean_zeroes_the_riemannian_gradient(p, m, spread):
    n, k, _, dtype, gen = p
    centre = rand_point((n, k), dtype, gen)
    pts = torch.stack([MAN.expmap(centre, rand_tangent(centre, gen, spread)) for _ in range(m)])
    w = torch.rand(m, dtype=dtype, generator=gen) + 0.1
    mu = karcher_mean(pts, w)
    assert mu.shape == (n, k) and orth_err(mu) < 10 * tol(dtype)
    grad = (w[:, None, None] * MAN.logmap(mu.expand(m, n, k), pts)).sum(0)
    assert float(grad.abs().max()) < 1e3 * tol(dtype)


@given(problems(batches=((),), min_codim=1))
def test_karcher_mean_of_two_points_is_the_geodesic_midpoint(p):
    n, k, _, dtype, gen = p
    x = rand_point((n, k), dtype, gen)
    y = MAN.expmap(x, rand_tangent(x, gen, 1.0))
    mu = karcher_mean(torch.stack([x, y]))
    mid = MAN.expmap(x, 0.5 * MAN.logmap(x, y))
    assert float(MAN.dist(mu, mid)) < 1e3 * tol(dtype)


@given(problems(batches=((),)))
def test_karcher_mean_is_equivariant_under_rotation_and_basis_change(p):
    n, k, _, dtype, gen = p
    centre = rand_point((n, k), dtype, gen)
    pts = torch.stack([MAN.expmap(centre, rand_tangent(centre, gen, 0.4)) for _ in range(4)])
    rot = rand_orthogonal(n, (), dtype, gen)
    q = rand_orthogonal(k, (4,), dtype, gen)
    mu = karcher_mean(pts)
    assert float(MAN.dist(karcher_mean(rot @ pts @ q), rot @ mu)) < 1e3 * tol(dtype)
    assert float(MAN.dist(karcher_mean(pts[:1]), pts[0])) < 10 * tol(dtype)


def test_karcher_mean_is_batched_over_leading_dimensions():
    gen = torch.Generator().manual_seed(2)
    pts = rand_point((3, 5, 7, 2), torch.float64, gen)
    mu = karcher_mean(pts)
    assert mu.shape == (3, 7, 2)
    assert float(MAN.dist(mu[1], karcher_mean(pts[1]))) < 1e-10


def test_karcher_mean_warns_when_not_converged():
    pts = MAN.random(6, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        karcher_mean(pts, max_iter=1)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_angle_functions_reject_bad_input():
    x = MAN.random(6, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"B must have at most as many columns.*k=7 > n=6"):
        principal_angles(x, torch.randn(6, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"A must have at least one column.*k=0"):
        principal_angles(torch.zeros(6, 0, dtype=torch.float64), x)
    with pytest.raises(ValueError, match=r"A and B must have the same number of rows n.*n=6.*n=4"):
        subspace_distance(x, MAN.random(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"B must have orthonormal columns"):
        principal_angles(x, 2 * x)
    bad = x.clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match=r"A must be finite"):
        principal_angles(bad, x)
    with pytest.raises(ValueError, match=r"metric must be one of 'geodesic', 'chordal'"):
        subspace_distance(x, x, "euclid")
    with pytest.raises(ValueError, match=r"X must have orthonormal columns"):
        karcher_mean(torch.ones(3, 6, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"X must have at most as many columns.*k=3 > n=2"):
        karcher_mean(torch.ones(3, 2, 3))
    with pytest.raises(ValueError, match=r"X must have at least 3 dimensions"):
        karcher_mean(x)
    pts = torch.stack([x, x])
    with pytest.raises(ValueError, match=r"weights must have shape \(\.\.\., m\) with m=2"):
        karcher_mean(pts, torch.ones(3))
    with pytest.raises(ValueError, match=r"weights must be non-negative with a positive sum"):
        karcher_mean(pts, torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match=r"weights must be finite"):
        karcher_mean(pts, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"max_iter must be >= 1, got 0"):
        karcher_mean(pts, max_iter=0)


# ------------------------------------------------------------------------------------------------
# layering
# ------------------------------------------------------------------------------------------------


def _grassmann_imports(module: str) -> set[str]:
    """The ``grassmann.*`` modules that ``grassmann/<module>.py`` imports (anywhere in it)."""
    import ast
    import pathlib

    import grassmann

    tree = ast.parse((pathlib.Path(grassmann.__file__).parent / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("grassmann")}


def test_geometry_modules_import_only_downwards():
    """angles and manifold share kernels through grassmann._linalg, never each other's names."""
    assert "grassmann.manifold" not in _grassmann_imports("angles")
    assert "grassmann.angles" not in _grassmann_imports("manifold")
    assert _grassmann_imports("_linalg") == set()
    assert _grassmann_imports("stiefel") <= {"grassmann._linalg", "grassmann._validation"}
