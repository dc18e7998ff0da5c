r"""Principal angles, subspace distances and the Karcher (Frechet) mean of subspaces.

The principal angles :math:`0 \le \theta_1 \le \dots \le \theta_k \le \pi/2` between
:math:`\operatorname{span} A` and :math:`\operatorname{span} B` (orthonormal ``A``, ``B``) are
defined by :math:`\cos\theta = \sigma(A^\top B)` (Bjorck & Golub, "Numerical methods for computing
angles between linear subspaces", Math. Comp. 1973). Every unitarily invariant distance between
subspaces is a function of them (Edelman, Arias & Smith 1998, Sec. 4.3; Hamm & Lee, "Grassmann
discriminant analysis", ICML 2008).
"""

from __future__ import annotations

import warnings

import torch

from grassmann._linalg import _expmap, _logmap, _principal_angles
from grassmann._validation import check_choice, check_finite, check_float, check_int, check_tensor
from grassmann.stiefel import (
    _check_matrix,
    _check_point,
    _check_same_n,
    orthonormalize,
)

__all__ = ["SUBSPACE_METRICS", "karcher_mean", "principal_angles", "subspace_distance"]

SUBSPACE_METRICS = (
    "geodesic",
    "chordal",
    "projection",
    "binet_cauchy",
    "fubini_study",
    "procrustes",
    "asimov",
)


def principal_angles(
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    orthonormalize_inputs: bool = False,
    validate: bool = True,
) -> torch.Tensor:
    r"""Principal angles between :math:`\operatorname{span} A` and :math:`\operatorname{span} B`.

    Accurate for tiny angles (Knyazev & Argentati, "Principal angles between subspaces in an
    A-based scalar product: algorithms and perturbation estimates", SIAM J. Sci. Comput. 23(6),
    2002; the algorithm of :func:`scipy.linalg.subspace_angles`):

    .. math::

        \cos\theta = \sigma\!\left(A^\top B\right), \qquad
        \sin\theta = \sigma\!\left((I - A A^\top) B\right), \qquad
        \theta_i = \begin{cases} \arcsin(\sin\theta_i) & \sin\theta_i < 1/\sqrt 2 \\
                                  \arccos(\cos\theta_i) & \text{otherwise.} \end{cases}

    (``B`` is the factor with fewer columns.) Cosines alone lose all digits of angles below
    :math:`\sqrt{\varepsilon}` (:math:`\cos 10^{-9} = 1` in float64); the sines keep a relative
    accuracy of about :math:`\varepsilon / \theta`. Differentiable (autograd) where the angles are
    distinct and not 0 or :math:`\pi/2`.

    Parameters
    ----------
    A : torch.Tensor
        ``(..., n, k1)`` matrix with orthonormal columns.
    B : torch.Tensor
        ``(..., n, k2)`` matrix with orthonormal columns; leading dimensions broadcast with
        those of ``A``.
    orthonormalize_inputs : bool
        If True, orthonormalise ``A`` and ``B`` first (QR), so that any full-column-rank
        matrices are accepted, like :func:`scipy.linalg.subspace_angles`. If False (default)
        the inputs must already be orthonormal.
    validate : bool
        Check the inputs' values: finite, and (unless ``orthonormalize_inputs``) orthonormal
        columns within :math:`10\sqrt{\varepsilon}`. :math:`O(n k^2)` and a host sync; shapes are
        always checked.

    Returns
    -------
    torch.Tensor
        ``(..., min(k1, k2))`` angles in :math:`[0, \pi/2]`, ascending.

    Raises
    ------
    ValueError
        If a ``k`` exceeds ``n`` or is 0, the ``n`` differ, or (with ``validate``) an input is
        not finite or not orthonormal.
    """
    if orthonormalize_inputs:
        A = orthonormalize(_check_matrix("A", A, finite=False), "qr", validate=validate)
        B = orthonormalize(_check_matrix("B", B, finite=False), "qr", validate=validate)
    A = _check_point("A", A, validate=validate and not orthonormalize_inputs)
    B = _check_point("B", B, validate=validate and not orthonormalize_inputs)
    _check_same_n("A", A, "B", B)
    return _principal_angles(A, B)


def _distance_from_angles(theta: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "geodesic":
        return torch.linalg.vector_norm(theta, dim=-1)
    if metric == "chordal":
        return torch.linalg.vector_norm(torch.sin(theta), dim=-1)
    if metric == "projection":
        return torch.sin(theta.amax(dim=-1))
    if metric == "procrustes":
        return 2.0 * torch.linalg.vector_norm(torch.sin(0.5 * theta), dim=-1)
    if metric == "asimov":
        return theta.amax(dim=-1)
    # 1 - prod cos^2 = -expm1(sum log1p(-sin^2)) keeps the digits of small angles
    one_minus_p2 = -torch.expm1(torch.log1p(-(torch.sin(theta) ** 2)).sum(dim=-1))
    bc = one_minus_p2.clamp_min(0).sqrt()
    if metric == "binet_cauchy":
        return bc
    return torch.atan2(bc, torch.cos(theta).prod(dim=-1))  # fubini_study = arccos(prod cos)


def subspace_distance(
    A: torch.Tensor,
    B: torch.Tensor,
    metric: str = "geodesic",
    *,
    validate: bool = True,
) -> torch.Tensor:
    r"""Distance between :math:`\operatorname{span} A` and :math:`\operatorname{span} B`.

    With the principal angles :math:`\theta` (:func:`principal_angles`; EAS 1998 Sec. 4.3,
    Hamm & Lee 2008 Table 1):

    .. math::

        d_{\mathrm{geodesic}} &= \|\theta\|_2, &
        d_{\mathrm{chordal}} &= \|\sin\theta\|_2
            = \tfrac{1}{\sqrt 2} \|A A^\top - B B^\top\|_F,\\
        d_{\mathrm{projection}} &= \sin\theta_{\max} = \|A A^\top - B B^\top\|_2, &
        d_{\mathrm{Binet\text{-}Cauchy}} &= \Big(1 - \prod_i \cos^2\theta_i\Big)^{1/2},\\
        d_{\mathrm{Fubini\text{-}Study}} &= \arccos \prod_i \cos\theta_i, &
        d_{\mathrm{Procrustes}} &= 2 \|\sin(\theta / 2)\|_2 = \min_Q \|A - B Q\|_F,\\
        d_{\mathrm{Asimov}} &= \theta_{\max}.

    Binet-Cauchy and Fubini-Study are evaluated through
    :math:`1 - \prod\cos^2 = -\operatorname{expm1}(\sum \operatorname{log1p}(-\sin^2\theta))`
    and ``atan2`` so that they stay accurate for small angles. If ``k1 != k2`` the
    ``min(k1, k2)`` principal angles are used.

    Parameters
    ----------
    A : torch.Tensor
        ``(..., n, k1)`` matrix with orthonormal columns.
    B : torch.Tensor
        ``(..., n, k2)`` matrix with orthonormal columns (leading dimensions broadcast).
    metric : str
        One of :data:`SUBSPACE_METRICS`: ``"geodesic"``, ``"chordal"``, ``"projection"``,
        ``"binet_cauchy"``, ``"fubini_study"``, ``"procrustes"``, ``"asimov"``.
    validate : bool
        Check the inputs' values (see :func:`principal_angles`).

    Returns
    -------
    torch.Tensor
        ``(...)`` distances.
    """
    check_choice("metric", metric, SUBSPACE_METRICS)
    return _distance_from_angles(principal_angles(A, B, validate=validate), metric)


def karcher_mean(
    X: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    tol: float | None = None,
    max_iter: int = 100,
    validate: bool = True,
) -> torch.Tensor:
    r"""Riemannian (Karcher / Frechet) mean of subspaces on the Grassmann manifold.

    Minimises :math:`f(\mu) = \tfrac12 \sum_i w_i\, d^2(\mu, X_i)` by the fixed-point iteration
    (Karcher 1977; Absil, Mahony & Sepulchre 2004, "Riemannian geometry of Grassmann manifolds
    with a view on algorithmic computation", Sec. 5)

    .. math::

        V = \frac{\sum_i w_i \mathrm{Log}_\mu(X_i)}{\sum_i w_i}, \qquad
        \mu \leftarrow \mathrm{Exp}_\mu(V),

    i.e. Riemannian gradient descent with unit step, until :math:`\|V\|_F \le` ``tol``. It starts
    from the extrinsic (chordal) mean, the top-k eigenvectors of :math:`\sum_i w_i X_i X_i^\top`
    (top-k left singular vectors of :math:`[\sqrt{w_1} X_1, \dots, \sqrt{w_m} X_m]`), which is
    already close for clustered data. The mean is unique when the data lie in a geodesic ball of
    radius below :math:`\pi/4` (Afsari 2011); far-spread data may converge slowly or to a local
    minimiser, and a :class:`RuntimeWarning` is issued if ``max_iter`` is reached.

    Parameters
    ----------
    X : torch.Tensor
        ``(..., m, n, k)`` batch of ``m`` points with orthonormal columns; leading dimensions
        are independent problems.
    weights : torch.Tensor, optional
        ``(m,)`` or ``(..., m)`` non-negative weights with a positive sum; uniform if None.
    tol : float, optional
        Stopping threshold on the norm of the mean log (the Riemannian gradient); default
        :math:`100\,\varepsilon` of the dtype (about 2e-14 in float64, 1e-5 in float32).
    max_iter : int
        Maximum number of iterations (each one ``m`` logarithms and one exponential map).
    validate : bool
        Check the values of ``X`` (finite, orthonormal) and ``weights``.

    Returns
    -------
    torch.Tensor
        ``(..., n, k)`` mean with orthonormal columns.
    """
    X = check_tensor("X", X, min_ndim=3)
    X = _check_point("X", X, validate=validate)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if X.shape[-3] < 1:
        raise ValueError(f"X must hold at least one point (m >= 1), got shape {tuple(X.shape)}")
    if tol is None:
        tol = 100.0 * torch.finfo(X.dtype).eps
    tol = check_float("tol", tol, minimum=0.0)
    m, n, k = X.shape[-3:]
    if weights is None:
        w = torch.full(X.shape[:-2], 1.0 / m, dtype=X.dtype, device=X.device)
    else:
        w = check_tensor("weights", weights, min_ndim=1)
        if w.shape[-1] != m:
            raise ValueError(
                f"weights must have shape (..., m) with m={m} (the number of points in X), "
                f"got shape {tuple(w.shape)}"
            )
        w = w.to(dtype=X.dtype, device=X.device)
        if validate:
            check_finite("weights", w)
            if bool((w < 0).any()) or bool((w.sum(-1) <= 0).any()):
                raise ValueError(
                    "weights must be non-negative with a positive sum, got "
                    f"min {float(w.min()):.3g} and sum {float(w.sum(-1).min()):.3g}"
                )
        w = w / w.sum(-1, keepdim=True)
        w = w.expand(X.shape[:-2])

    # extrinsic mean: top-k left singular vectors of [sqrt(w_i) X_i]  (n x m k)
    z = (X * w.sqrt()[..., None, None]).movedim(-3, -2).reshape(*X.shape[:-3], n, m * k)
    mu = torch.linalg.svd(z, full_matrices=False)[0][..., :k]
    wb = w[..., None, None]
    for _ in range(max_iter):
        v = (wb * _logmap(mu.unsqueeze(-3), X)).sum(dim=-3)
        if float(torch.linalg.matrix_norm(v).amax()) <= tol:
            return mu
        mu = _expmap(mu, v)  # orthonormal to ~16 ulps: the kernel repairs drift itself
    warnings.warn(
        f"karcher_mean did not reach tol={tol:.3g} in max_iter={max_iter} iterations",
        RuntimeWarning,
        stacklevel=2,
    )
    return mu
