r"""Accuracy of the Grassmann numerics against a 50-digit mpmath reference.

Inputs with known principal angles are built exactly in mpmath: ``X = Z[:, :k] Q_a`` and
``Y = (Z[:, :k] cos T + Z[:, k:2k] sin T) Q_b`` for an orthogonal ``Z`` (n x n) and rotations
``Q_a``, ``Q_b`` of the bases (45-degree Givens products, or random), then rounded to float64.
The reference is computed at 50 digits from the float64 matrices as given (orthonormalised there
by their polar factor, which keeps the spans), by the textbook algorithms: cosines from the SVD
of :math:`X^\top Y`; the logarithm by BZA 2020 Alg. 5.3 with its thin SVD and arcsin; the
exponential map by EAS 1998 Thm 2.3 with the thin SVD of ``U``.

Three regimes: tiny angles (1e-9 .. 1e-8), angles near pi/2 (pi/2 - 1e-8 .. pi/2 - 1e-9), and
mixed ones (clusters at both ends and angles in between). float64 results must be within 1e-12
of the reference, except where the problem itself is ill-conditioned:

**The conditioning limit of the logarithm.** ``Log_X(Y)`` depends on ``Y`` through the
Procrustes representative :math:`Y_* = Y\,\mathrm{polar}(Y^\top X)`, and the polar factor of a
``k x k`` matrix with singular values :math:`\sigma_1 \ge \dots \ge \sigma_k` has the absolute
condition number :math:`2 / (\sigma_{k-1} + \sigma_k)` (Higham, "Functions of Matrices", 2008,
Thm 8.9). With :math:`\sigma = \cos\theta`, two angles near pi/2 make it huge (2.5e8 for
pi/2 - 1e-9 and pi/2 - 3e-9): then a perturbation of ``Y`` by one rounding error moves the exact
logarithm by about :math:`\varepsilon \kappa`, far above 1e-12, and no float64 algorithm can do
better than :math:`O(\varepsilon \kappa)`. The tests hold the package to
:math:`|U - U_{\mathrm{ref}}| \le 8 \varepsilon \kappa`, :math:`\kappa = 1 + 2/(\cos\theta_{k-1}
+ \cos\theta_k)`, show that the reference itself moves by more than 1e-12 under such a
perturbation, and hold everything that is well-conditioned there -- the angles (singular values
of the logarithm), ``dist``, the subspace ``span Exp_X(Log_X(Y))`` -- to 1e-12.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from grassmann import Grassmann, principal_angles

DPS = 50
EPS = torch.finfo(torch.float64).eps
HALF_PI = math.pi / 2
MAN = Grassmann()

# (n, angles): the regimes of the module docstring
REGIMES = {
    "tiny": (8, ["1e-9", "3e-9", "1e-8"]),
    "near_half_pi": (8, ["pi/2 - 1e-8", "pi/2 - 3e-9", "pi/2 - 1e-9"]),
    "mixed": (12, ["1e-9", "2e-9", "0.7", "pi/2 - 3e-9", "pi/2 - 1e-9"]),
    "mixed_spread": (10, ["1e-9", "0.3", "1.2", "pi/2 - 1e-9"]),
}


# ------------------------------------------------------------------------------------------------
# the 50-digit reference (mp_* helpers also used by test_angles.py)
# ------------------------------------------------------------------------------------------------


def _angle(text: str):
    """An angle written as ``"a"`` or ``"pi/2 - a"``, exactly at the working precision."""
    if text.startswith("pi/2 - "):
        return mpmath.pi / 2 - mpmath.mpf(text.removeprefix("pi/2 - "))
    return mpmath.mpf(text)


def mp_matrix(t: torch.Tensor):
    return mpmath.matrix(t.tolist())  # float64 -> mpf is exact


def to_float64(m) -> torch.Tensor:
    rows = [[float(m[i, j]) for j in range(m.cols)] for i in range(m.rows)]
    return torch.tensor(rows, dtype=torch.float64)


def mp_orthonormal(a):
    """Orthonormal polar factor ``A (A^T A)^{-1/2}`` (same span as ``A``)."""
    lam, v = mpmath.eigsy(a.T * a)
    return a * (v * mpmath.diag([1 / mpmath.sqrt(x) for x in lam]) * v.T)


def _random_orthogonal(n: int, seed: int):
    g = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return mp_orthonormal(mp_matrix(g))


def _givens45(k: int):
    """Product of 45-degree rotations of neighbouring coordinates: mixes every basis vector."""
    q = mpmath.eye(k)
    c = mpmath.sqrt(mpmath.mpf(1) / 2)
    for i in range(k - 1):
        r = mpmath.eye(k)
        r[i, i], r[i + 1, i + 1], r[i, i + 1], r[i + 1, i] = c, c, -c, c
        q = q * r
    return q


def _known_pair(n: int, angles: list[str], seed: int, basis: str):
    """float64 ``X``, ``Y`` with principal angles ``angles`` (to one rounding of the entries)."""
    k = len(angles)
    z = _random_orthogonal(n, seed)
    if basis == "givens":
        qa, qb = _givens45(k), _givens45(k).T
    else:
        qa, qb = _random_orthogonal(k, seed + 1), _random_orthogonal(k, seed + 2)
    x, y = mpmath.matrix(n, k), mpmath.matrix(n, k)
    for j, text in enumerate(angles):
        t = _angle(text)
        for i in range(n):
            x[i, j] = z[i, j]
            y[i, j] = z[i, j] * mpmath.cos(t) + z[i, k + j] * mpmath.sin(t)
    return to_float64(x * qa), to_float64(y * qb)


def mp_principal_angles(xm, ym) -> list:
    """Principal angles, ascending: arccos of the singular values of ``X^T Y``."""
    return sorted(mpmath.acos(min(s, 1)) for s in mpmath.svd_r(xm.T * ym, compute_uv=False))


def _ref_logmap(xm, ym):
    """BZA 2020 Alg. 5.3 as written: Procrustes alignment, thin SVD, arcsin."""
    q, _, r = mpmath.svd_r(ym.T * xm)  # Y^T X = q diag(s) r
    ys = ym * q * r
    qh, sh, rh = mpmath.svd_r(ys - xm * (xm.T * ys), full_matrices=False)
    return qh * mpmath.diag([mpmath.asin(min(s, 1)) for s in sh]) * rh


def _ref_expmap(xm, um):
    """EAS 1998 Thm 2.3 with the thin SVD of ``U`` (horizontal at ``X``)."""
    p, s, vt = mpmath.svd_r(um, full_matrices=False)
    cos = mpmath.diag([mpmath.cos(v) for v in s])
    sin = mpmath.diag([mpmath.sin(v) for v in s])
    return xm * vt.T * cos * vt + p * sin * vt


class Case:
    """One input pair and its references, computed once (mpmath is slow)."""

    def __init__(self, regime: str, basis: str, seed: int) -> None:
        n, angles = REGIMES[regime]
        with mpmath.workdps(DPS):
            self.x, self.y = _known_pair(n, angles, seed, basis)
            xm, ym = mp_orthonormal(mp_matrix(self.x)), mp_orthonormal(mp_matrix(self.y))
            self.theta_ref = mp_principal_angles(xm, ym)
            self.exact = [_angle(a) for a in angles]
            self.angles = torch.tensor([float(t) for t in self.theta_ref], dtype=torch.float64)
            self.dist = float(mpmath.sqrt(sum(t**2 for t in self.theta_ref)))
            log_ref = _ref_logmap(xm, ym)
            self.log = to_float64(log_ref)
            self.proj_x, self.proj_y = to_float64(xm * xm.T), to_float64(ym * ym.T)
            # expmap of the reference log (a tangent vector with the regime's singular values)
            self.u = to_float64(log_ref)
            um = mp_matrix(self.u)
            self.exp = to_float64(_ref_expmap(xm, um - xm * (xm.T * um)))
            # the reference log moved by a perturbation of y of one rounding error
            gen = torch.Generator().manual_seed(seed + 3)
            bump = EPS * torch.randn(self.y.shape, dtype=torch.float64, generator=gen)
            self.log_bumped = to_float64(_ref_logmap(xm, mp_orthonormal(ym + mp_matrix(bump))))
        cos = torch.cos(self.angles)  # descending
        k = len(angles)
        self.kappa = 1.0 + (2.0 / float(cos[-2] + cos[-1]) if k > 1 else 0.0)


_CASES: dict[tuple[str, str, int], Case] = {}


@pytest.fixture(
    params=[(r, b, s) for r in REGIMES for b in ("givens", "random") for s in (0, 1)],
    ids=lambda p: f"{p[0]}-{p[1]}-{p[2]}",
)
def case(request) -> Case:
    if request.param not in _CASES:
        _CASES[request.param] = Case(*request.param)
    return _CASES[request.param]


# ------------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------------


def test_inputs_have_the_angles_they_were_built_with(case):
    """The construction is right: the float64 inputs' angles are the intended ones to ~eps."""
    for t_ref, t in zip(case.theta_ref, case.exact, strict=True):
        assert abs(float(t_ref - t)) < 4 * EPS


def test_principal_angles_are_within_1e_12_of_the_reference(case):
    got = principal_angles(case.x, case.y)
    torch.testing.assert_close(got, case.angles, rtol=0, atol=1e-12)
    torch.testing.assert_close(principal_angles(case.y, case.x), case.angles, rtol=0, atol=1e-12)


def test_dist_is_within_1e_12_of_the_reference(case):
    assert abs(float(MAN.dist(case.x, case.y)) - case.dist) < 1e-12
    assert abs(float(MAN.dist(case.y, case.x)) - case.dist) < 1e-12


def test_expmap_is_within_1e_12_of_the_reference(case):
    got = MAN.expmap(case.x, case.u)
    torch.testing.assert_close(got, case.exp, rtol=0, atol=1e-12)


def test_logmap_angles_and_geodesic_endpoint_are_within_1e_12_of_the_reference(case):
    """Well-conditioned everywhere: the singular values of Log and span Exp_X(Log_X(Y)).

    Regression: with two angles near pi/2 the cosines were paired with the sines through the
    eigenvectors of a numerically degenerate Gram matrix, which averaged them: pi/2 - 1e-9 and
    pi/2 - 3e-9 both came out as pi/2 - 2e-9, and the geodesic missed Y by 1e-9.
    """
    u = MAN.logmap(case.x, case.y)
    sv = torch.linalg.svdvals(u).flip(-1)
    torch.testing.assert_close(sv, case.angles, rtol=0, atol=1e-12)
    assert float((case.x.mT @ u).abs().max()) < 1e-14
    z = MAN.expmap(case.x, u)
    torch.testing.assert_close(z @ z.mT, case.proj_y, rtol=0, atol=1e-12)


def test_logmap_is_within_its_conditioning_limit_of_the_reference(case):
    """``|U - U_ref| <= 8 eps kappa``; that is 1e-12 or better where ``kappa < 5e2``."""
    err = float((MAN.logmap(case.x, case.y) - case.log).abs().max())
    assert err <= 8 * EPS * case.kappa
    if case.kappa < 5e2:
        assert err < 1e-12


def test_the_conditioning_limit_is_real(case):
    """Where ``kappa`` is large, one rounding error in Y moves the exact logarithm by ~eps kappa.

    So the limit above is the problem's, not the algorithm's; where ``kappa`` is small the
    logarithm is stable and the same perturbation moves it by a few eps only.
    """
    moved = float((case.log_bumped - case.log).abs().max())
    if case.kappa > 1e6:
        assert moved > 1e-12
        assert moved > 1e-3 * EPS * case.kappa
    else:
        assert moved < 100 * EPS * case.kappa
