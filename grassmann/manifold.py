r"""The Grassmann manifold :math:`\mathrm{Gr}(n, k)` as a :class:`geoopt.Manifold`.

A point is the k-dimensional subspace spanned by the columns of an ``(..., n, k)`` matrix ``X``
with :math:`X^\top X = I_k`; ``X Q`` for an orthogonal ``Q`` is the same point. Tangent vectors
are represented by their horizontal lifts :math:`\{U : X^\top U = 0\}` with the metric
:math:`\langle U, V\rangle = \operatorname{tr}(U^\top V)` (Edelman, Arias & Smith, "The geometry
of algorithms with orthogonality constraints", SIAM J. Matrix Anal. Appl. 20(2), 1998 -- EAS 1998;
Bendokat, Zimmermann & Absil, "A Grassmann manifold handbook: basic geometry and computational
aspects", arXiv:2011.13699, 2020 -- BZA 2020).

Performance: the maps below work through ``k x k`` Gram matrices (``eigh`` of :math:`U^\top U`)
instead of ``n x k`` SVDs wherever the result is an even function of the singular values, which
is exactly the case for the exponential map, the logarithm and parallel transport. Only the
principal angles (:func:`grassmann.angles.principal_angles`, used by :meth:`Grassmann.dist`) need
an ``n x k`` SVD, to keep tiny angles accurate. The optimiser hot path (:meth:`Grassmann.proju`,
:meth:`Grassmann.retr`, :meth:`Grassmann.retr_transp`) is evaluated on the transposes
``(..., k, n)`` with fused ``baddbmm`` products, computes the retraction once per step, and never
synchronises with the device or upcasts to float64.
"""

from __future__ import annotations

import torch
from geoopt import ManifoldTensor
from geoopt.manifolds.base import Manifold
from geoopt.utils import size2shape

from grassmann._validation import check_choice
from grassmann.stiefel import (
    _as_linalg_dtype,
    _check_matrix,
    _check_point,
    _check_same_shape,
    _gram_eigh,
    _qr_signfix,
    _sinc,
    _sym_funcm,
    orthonormalize,
)

__all__ = ["Grassmann"]

GRASSMANN_RETRACTIONS = ("qr", "polar", "expmap")


# ----------------------------------------------------------------------------------------------
# kernels (no argument checks; batched, device and dtype follow the inputs)
# ----------------------------------------------------------------------------------------------


def _addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """``c + alpha * (a @ b)``, fused into one ``baddbmm`` / ``addmm`` where the shapes allow."""
    if c.ndim == a.ndim == b.ndim == 3 and a.shape[0] == b.shape[0] == c.shape[0]:
        return torch.baddbmm(c, a, b, alpha=alpha)
    if c.ndim == a.ndim == b.ndim == 2:
        return torch.addmm(c, a, b, alpha=alpha)
    return torch.add(c, a @ b, alpha=alpha)


# The kernels below take the transposes ``xt = X^T`` etc. (``(..., k, n)``) and compute in that
# orientation: every large product is then a ``(k x k) @ (k x n)`` or ``(k x n) @ (n x k)``
# batched matmul with ``n`` contiguous, which torch's CPU bmm runs 2-3x faster than the
# ``(n x k) @ (k x k)`` form for either memory layout of ``X`` (and it needs no copy for the
# column-major bases of :class:`grassmann.heads.GrassmannHead`, whose ``X^T`` is contiguous).


def _proj_t(xt: torch.Tensor, ut: torch.Tensor) -> torch.Tensor:
    r""":math:`(U - X X^\top U)^\top = U^\top - (U^\top X) X^\top` from ``xt``, ``ut``."""
    return _addmm(ut, ut @ xt.mT, xt, -1.0)


def _proju(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Horizontal projection :math:`U - X (X^\top U)`: one bmm and one fused ``baddbmm``."""
    return _proj_t(x.mT, u.mT).mT


# Single-pass orthonormalisation loses about eps * cond(Y^T Y) of orthonormality (Yamamoto et al.
# 2015); above this bound on the condition number a second pass is made (see _orth_rows).
_COND_SECOND_PASS = 8.0


def _norm1(a: torch.Tensor) -> torch.Tensor:
    """Matrix 1-norm (largest absolute column sum) of a batch of square matrices."""
    return a.abs().sum(dim=-2).amax(dim=-1)


def _gram_factor(yt: torch.Tensor, polar: bool) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(M, rho)`` with :math:`M Y^\top` orthonormal rows, ``rho >= cond(Y^T Y)`` (estimate).

    ``G = Y^T Y`` (one bmm). QR: :math:`M = L^{-1}` for the Cholesky factor :math:`G = L L^\top`
    (so :math:`Q = Y L^{-\top} = Y R^{-1}`, the Q of the QR factorisation with positive
    :math:`\operatorname{diag} R`); ``rho`` = :math:`\|G\|_1 \|G^{-1}\|_1` with
    :math:`G^{-1} = L^{-\top} L^{-1}`, an upper bound on the 2-norm condition number of the
    symmetric ``G`` (and at most ``k`` times it). Polar:
    :math:`M = G^{-1/2}` (``eigh``), ``rho`` the exact eigenvalue ratio. The ``k x k`` work is
    done in float32 at least (torch.linalg has no half-precision kernels).
    """
    gram = _as_linalg_dtype(yt @ yt.mT)
    if polar:
        lam, vecs = torch.linalg.eigh(gram)
        lam = lam.clamp_min(torch.finfo(lam.dtype).tiny)
        m = _sym_funcm(lam, vecs, torch.rsqrt)
        rho = lam[..., -1] / lam[..., 0]
    else:
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        chol = torch.linalg.cholesky_ex(gram)[0]
        m = torch.linalg.solve_triangular(chol, eye, upper=False)
        # 1-norm condition number, an upper bound on the 2-norm one for symmetric G
        rho = _norm1(gram) * _norm1(m.mT @ m)
    return m.to(yt.dtype), rho


def _orth_rows(yt: torch.Tensor, polar: bool) -> torch.Tensor:
    r"""Orthonormalise the rows of ``yt`` (:math:`Y^\top`, with :math:`Y^\top Y \succeq I`).

    One CholeskyQR (or polar) pass, :math:`Q^\top = M Y^\top`, costs one bmm for the Gram
    matrix and one for the product. It is exact to about :math:`\varepsilon \operatorname{cond}
    (Y^\top Y)` (a few ulps for moderate steps); where the estimated condition number exceeds
    ``_COND_SECOND_PASS`` (a large, anisotropic step) a second pass restores full accuracy. On
    the CPU the second pass runs only on those batch entries (reading the estimate is free);
    on other devices it runs on the whole batch, branch-free, to avoid a host sync.
    """
    m, rho = _gram_factor(yt, polar)
    qt = m @ yt
    if qt.device.type == "cpu":
        need = rho > _COND_SECOND_PASS
        if bool(need.all()):
            qt = _gram_factor(qt, polar)[0] @ qt
        elif bool(need.any()):
            k, n = qt.shape[-2:]
            flat = qt.reshape(-1, k, n)
            idx = need.expand(qt.shape[:-2]).reshape(-1).nonzero().squeeze(-1)
            sub = flat[idx]
            flat[idx] = _gram_factor(sub, polar)[0] @ sub
            qt = flat.reshape(qt.shape)
    else:
        qt = _gram_factor(qt, polar)[0] @ qt
    return qt


def _retr_t(xt: torch.Tensor, ut: torch.Tensor, polar: bool) -> torch.Tensor:
    r"""Transposed QR / polar retraction of the horizontal part of ``U``.

    :math:`Y = X + (U - X X^\top U) = X (I - X^\top U) + U`, i.e.
    :math:`Y^\top = (I - U^\top X) X^\top + U^\top`: the projection and the sum are one bmm and
    one fused ``baddbmm``; then :func:`_orth_rows`.
    """
    eye = torch.eye(xt.shape[-2], dtype=xt.dtype, device=xt.device)
    yt = _addmm(ut, eye - ut @ xt.mT, xt, 1.0)
    return _orth_rows(yt, polar)


def _expmap(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""``Exp_X(U) = X V cos(S) V^T + U V diag(sin(s) / s) V^T`` with ``U^T U = V S^2 V^T``.

    Equal to EAS 1998 Thm 2.3, :math:`X V \cos(S) V^\top + P \sin(S) V^\top` for the thin SVD
    :math:`U = P S V^\top`, since :math:`P S = U V`; cos and sinc are even, hence smooth functions
    of :math:`S^2`, and rounding in the eigenvalues of the Gram matrix costs nothing. ``u`` must
    be horizontal. Evaluated transposed (the ``k x k`` factors are symmetric).
    """
    lam, vecs = _gram_eigh(u)
    s = lam.sqrt()
    cos_m = _sym_funcm(s, vecs, torch.cos)
    sinc_m = _sym_funcm(s, vecs, _sinc)
    return _addmm(sinc_m @ u.mT, cos_m, x.mT, 1.0).mT


def _logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Stable Grassmann logarithm, BZA 2020 Alg. 5.3, with angles from atan2(sin, cos).

    1. :math:`Y^\top X = Q S R^\top` (SVD) and :math:`Y_* = Y Q R^\top`: the representative of
       span(Y) with :math:`X^\top Y_* = R S R^\top` symmetric positive semi-definite. This works
       also where :math:`X^\top Y` is singular (then ``Q``, ``R`` are not unique, any choice is a
       valid Procrustes alignment).
    2. :math:`M = (I - X X^\top) Y_* = \hat Q \hat S \hat R^\top` (thin SVD) and
       :math:`\mathrm{Log}_X(Y) = \hat Q \arcsin(\hat S) \hat R^\top = M \hat R
       \operatorname{diag}(\theta / \sin\theta) \hat R^\top`.

    Step 2 is done through the ``k x k`` Gram matrix :math:`M^\top M = \hat R \hat S^2 \hat R^\top`
    (``eigh``); the angles are :math:`\theta = \operatorname{atan2}(\sin, \cos)` with the sines
    from the eigenvalues and the cosines from :math:`\hat R^\top (X^\top Y_*) \hat R`, which keeps
    full accuracy both near 0 (where :math:`\theta/\sin\theta \to 1` is insensitive to errors in
    the sine) and near :math:`\pi/2` (where ``arcsin`` alone would lose half the digits).
    """
    q, _, rh = torch.linalg.svd(y.mT @ x)
    ys = y @ (q @ rh)
    c = x.mT @ ys
    c = 0.5 * (c + c.mT)
    m = ys - x @ c
    lam, vecs = _gram_eigh(m)
    sin = lam.sqrt()
    cos = torch.diagonal(vecs.mT @ c @ vecs, dim1=-2, dim2=-1).clamp_min(0)
    theta = torch.atan2(sin, cos)
    # theta / sin(theta) -> 1 as sin -> 0
    ratio = torch.where(sin > 0, theta / torch.where(sin > 0, sin, 1.0), 1.0)
    return m @ _sym_funcm(ratio, vecs, lambda r: r)


def _parallel_transp(x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, t: float) -> torch.Tensor:
    r"""EAS 1998 eq. 2.68 in Gram form.

    With :math:`U = P S V^\top`, :math:`\tau D(t) = ([X V, P] [-\sin St; \cos St] P^\top +
    (I - P P^\top)) D`. Substituting :math:`P = U V S^{-1}` and :math:`W = U^\top D`:

    .. math::

        \tau D(t) = D - X V \operatorname{diag}(t \operatorname{sinc}(s t)) V^\top W
                      - U V \operatorname{diag}(\tfrac{t^2}{2} \operatorname{sinc}^2(s t / 2))
                        V^\top W,

    using :math:`(1 - \cos st) / s^2 = \tfrac{t^2}{2}\operatorname{sinc}^2(st/2)`; both
    coefficients are even in ``s`` and stay accurate at ``s = 0``.
    """
    lam, vecs = _gram_eigh(u)
    s = lam.sqrt()
    w = u.mT @ v
    f1 = _sym_funcm(s, vecs, lambda s_: t * _sinc(s_ * t))
    f2 = _sym_funcm(s, vecs, lambda s_: 0.5 * t * t * _sinc(0.5 * s_ * t) ** 2)
    return v - x @ (f1 @ w) - u @ (f2 @ w)


# ----------------------------------------------------------------------------------------------
# the manifold
# ----------------------------------------------------------------------------------------------


class Grassmann(Manifold):
    r"""Grassmann manifold :math:`\mathrm{Gr}(n, k)` of k-dimensional subspaces of :math:`R^n`.

    Points are ``(..., n, k)`` tensors with orthonormal columns (any representative of the
    subspace); tangent vectors are horizontal ``(..., n, k)`` tensors, :math:`X^\top U = 0`.
    Batched over leading dimensions; device and dtype follow the inputs (float32 or float64).

    Formulas (EAS 1998; BZA 2020):

    .. math::

        \operatorname{proj}_X(G) &= G - X (X^\top G), \qquad
        \langle U, V\rangle_X = \operatorname{tr}(U^\top V),\\
        \mathrm{Exp}_X(U) &= X V \cos(S) V^\top + P \sin(S) V^\top,
        \quad U = P S V^\top \text{ (thin SVD)},\\
        d(X, Y) &= \|\theta\|_2, \quad \cos\theta = \sigma(X^\top Y)
        \text{ (principal angles)}.

    Parameters
    ----------
    retraction : {"qr", "polar", "expmap"}
        Retraction used by :meth:`retr` and :meth:`retr_transp` (what the geoopt optimisers
        call). All three first project ``u`` to the horizontal space (geoopt's momentum buffer
        starts from the raw Euclidean gradient, which is not horizontal). ``"qr"`` (default):
        :math:`\operatorname{qf}(X + U)` with positive :math:`\operatorname{diag} R`, computed
        by one CholeskyQR pass (matmul-only; the Gram matrix :math:`I + U^\top U` is well
        conditioned for moderate steps, so one pass is accurate; a second pass is made for the
        batch entries of a large anisotropic step). ``"polar"``:
        :math:`(X + U)(I + U^\top U)^{-1/2}`, which keeps the representative closest to ``X + U``
        (best for momentum). ``"expmap"``: the exact exponential map.
    check : bool
        Validate the points given to :meth:`logmap`, :meth:`dist`, :meth:`parallel_transp`
        (finite, orthonormal columns within :math:`10\sqrt{\varepsilon}`, matching ``n`` and
        ``k``): :math:`O(n k^2)` and a host sync per call. The optimiser hot path
        (:meth:`proju`, :meth:`egrad2rgrad`, :meth:`retr`, :meth:`retr_transp`,
        :meth:`expmap`, :meth:`transp`, :meth:`inner`) never validates values, only shapes
        where it is free. Pass ``check=False`` to skip the value checks everywhere.

    Examples
    --------
    >>> import geoopt, torch
    >>> from grassmann import Grassmann
    >>> man = Grassmann()
    >>> w = geoopt.ManifoldParameter(man.random(10, 16, 4), manifold=man)
    >>> opt = geoopt.optim.RiemannianSGD([w], lr=1e-2, momentum=0.9)
    """

    name = "Grassmann"
    ndim = 2
    reversible = False

    def __init__(self, retraction: str = "qr", check: bool = True) -> None:
        super().__init__()
        self.retraction = check_choice("retraction", retraction, GRASSMANN_RETRACTIONS)
        if not isinstance(check, bool):
            raise TypeError(f"check must be a bool, got {check!r} ({type(check).__name__})")
        self.check = check

    def extra_repr(self) -> str:
        return f"retraction={self.retraction!r}, check={self.check}"

    # -- checks (geoopt API) -------------------------------------------------------------------

    def _check_shape(self, shape: tuple[int, ...], name: str) -> tuple[bool, str | None]:
        """Shape ``(..., n, k)`` with ``1 <= k <= n``."""
        if len(shape) < 2:
            return False, f"{name} must have at least 2 dimensions (..., n, k), got {tuple(shape)}"
        n, k = shape[-2], shape[-1]
        if k < 1:
            return False, (
                f"{name} must have at least one column (k >= 1), got shape {tuple(shape)} "
                f"with k={k}"
            )
        if k > n:
            return False, (
                f"{name} must have at most as many columns as rows (k <= n), got shape "
                f"{tuple(shape)} with k={k} > n={n}"
            )
        return True, None

    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        """``X^T X = I`` within ``atol`` (``rtol`` is unused: the target is the identity)."""
        xtx = x.mT @ x
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        err = float((xtx - eye).abs().amax()) if xtx.numel() else 0.0
        if not err <= atol:
            return False, f"`X^T X != I`: max |X^T X - I| = {err:.3e} > atol={atol}"
        return True, None

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5
    ) -> tuple[bool, str | None]:
        """``X^T U = 0`` within ``atol`` (``rtol`` is unused: the target is zero)."""
        xtu = x.mT @ u
        err = float(xtu.abs().amax()) if xtu.numel() else 0.0
        if not err <= atol:
            return False, f"`X^T U != 0`: max |X^T U| = {err:.3e} > atol={atol}"
        return True, None

    def _points(self, x: torch.Tensor, y: torch.Tensor) -> None:
        _check_point("x", x, validate=self.check)
        _check_point("y", y, validate=self.check)
        _check_same_shape("x", x, "y", y)

    # -- projections and metric ---------------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest point (polar factor, :func:`grassmann.orthonormalize` with ``"polar"``).

        The polar factor moves an almost-orthonormal ``X`` the least, so optimiser states kept
        in the old representative stay valid after ``stabilize``.
        """
        return orthonormalize(x, "polar", validate=False)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Horizontal projection :math:`U - X (X^\top U)` (EAS 1998 Sec. 2.5)."""
        return _proju(x, u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient :math:`G - X (X^\top G)` of the Euclidean gradient ``G``."""
        return _proju(x, u)

    def inner(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor | None = None,
        *,
        keepdim: bool = False,
    ) -> torch.Tensor:
        r"""Canonical metric :math:`\operatorname{tr}(U^\top V)`, shape (...) or (..., 1, 1).

        The ``keepdim`` shape broadcasts against points, as ``RiemannianAdam`` needs.
        """
        if v is None:
            v = u
        return (u * v).sum(dim=(-2, -1), keepdim=keepdim)

    def norm(self, x: torch.Tensor, u: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r""":math:`\|U\|_F` (overflow-safe)."""
        return torch.linalg.matrix_norm(u, dim=(-2, -1), keepdim=keepdim)

    # -- retractions and exponential map ------------------------------------------------------

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Retract ``u`` at ``x`` (see ``retraction`` in the class doc).

        ``u`` is first projected to the horizontal space, :math:`U_h = U - X (X^\top U)`, so that
        any ``u`` gives a point with orthonormal columns: geoopt's ``RiemannianSGD`` starts its
        momentum buffer from the raw Euclidean gradient, which is not horizontal. The projection
        is fused with the retraction: :math:`X + U_h = X (I - X^\top U) + U`. For ``"qr"`` and
        ``"polar"`` one CholeskyQR / polar pass on :math:`Y = X + U_h` (Gram matrix
        :math:`Y^\top Y = I + U_h^\top U_h \succeq I`) is exact to a few ulps; a second pass is
        made where a large anisotropic step makes the Gram matrix ill-conditioned
        (estimated condition number above 8), so the result is orthonormal to about
        :math:`10 \varepsilon` for any step. The result is laid out column-major (its transpose
        is contiguous), the layout of :class:`grassmann.heads.GrassmannHead`.
        """
        return self._retr_t(x, u).mT

    def _retr_t(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`retr` (contiguous ``(..., k, n)``)."""
        if self.retraction == "expmap":
            return _expmap(x, _proju(x, u)).mT
        return _retr_t(x.mT, u.mT, self.retraction == "polar")

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map (EAS 1998 Thm 2.3) :math:`X V\cos(S)V^\top + P\sin(S)V^\top`.

        ``u`` is projected to the horizontal space first (a no-op up to rounding for a
        horizontal ``u``; any other ``u`` stands for its horizontal part), so that the result
        always has orthonormal columns. Computed as
        :math:`X V \cos(S) V^\top + U V \operatorname{diag}(\sin(s)/s) V^\top` from the
        eigendecomposition :math:`U^\top U = V S^2 V^\top` (no ``n x k`` SVD).
        """
        return _expmap(x, _proju(x, u))

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""Logarithm :math:`\mathrm{Log}_X(Y)`: BZA 2020 Alg. 5.3 (stable, any :math:`X^\top Y`).

        Returns the horizontal ``U`` at ``x`` of smallest norm with
        :math:`\operatorname{span}\mathrm{Exp}_X(U) = \operatorname{span} Y`; its singular values
        are the principal angles between ``x`` and ``y``, so :math:`\|U\|_F = d(X, Y)`. Defined
        also where :math:`X^\top Y` is singular (a principal angle of :math:`\pi/2`, the cut
        locus), where it returns one of the minimising geodesics' initial velocities.
        """
        self._points(x, y)
        return _logmap(x, y)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance :math:`\|\theta\|_2` over the principal angles.

        The angles come from :func:`grassmann.angles.principal_angles` (sine-based below
        :math:`\pi/4`), so tiny distances keep their relative accuracy.
        """
        from grassmann.angles import _principal_angles

        self._points(x, y)
        d = torch.linalg.vector_norm(_principal_angles(x, y), dim=-1)
        return d[..., None, None] if keepdim else d

    # -- transports -----------------------------------------------------------------------------

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport by projection :math:`\operatorname{proj}_Y(V)`.

        Reference: Absil, Mahony & Sepulchre 2008, Sec. 8.1.3.
        """
        return _proju(y, v)

    def retr_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Retract ``u`` at ``x`` (:meth:`retr`) and transport ``v`` there by projection.

        The retraction is computed once; the transport is
        :math:`V - Y (Y^\top V)`, one bmm and one fused ``baddbmm`` (evaluated transposed).
        """
        yt = self._retr_t(x, u)
        return yt.mT, _proj_t(yt, v.mT).mT

    def expmap_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expmap` of ``u`` at ``x`` and transport of ``v`` there by projection."""
        y = self.expmap(x, u)
        return y, _proju(y, v)

    def transp_follow_retr(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Transport ``v`` by projection to :meth:`retr` ``(x, u)``."""
        return self.retr_transp(x, u, v)[1]

    def transp_follow_expmap(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """Transport ``v`` by projection to :meth:`expmap` ``(x, u)``."""
        return self.expmap_transp(x, u, v)[1]

    def parallel_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, t: float = 1.0
    ) -> torch.Tensor:
        r"""Parallel transport of ``v`` along the geodesic :math:`t \mapsto \mathrm{Exp}_X(tU)`.

        EAS 1998 eq. (2.68), with :math:`U = P S V^\top` (thin SVD):

        .. math::

            \tau V(t) = \left( [X V, P] \begin{bmatrix} -\sin St \\ \cos St \end{bmatrix}
            P^\top + (I - P P^\top) \right) V ,

        evaluated in Gram form (no ``n x k`` SVD). The result is horizontal at
        ``expmap(x, t * u)``; inner products are preserved and ``u`` is carried to the geodesic's
        velocity.

        Parameters
        ----------
        x : torch.Tensor
            ``(..., n, k)`` start point.
        u : torch.Tensor
            ``(..., n, k)`` horizontal direction of the geodesic.
        v : torch.Tensor
            ``(..., n, k)`` horizontal vector at ``x`` to transport.
        t : float
            Time along the geodesic.

        Returns
        -------
        torch.Tensor
            ``(..., n, k)`` horizontal vector at ``expmap(x, t * u)``.
        """
        _check_point("x", x, validate=self.check)
        _check_same_shape("x", x, "u", _check_matrix("u", u, finite=False))
        _check_same_shape("x", x, "v", _check_matrix("v", v, finite=False))
        return _parallel_transp(x, u, v, float(t))

    def expmap_parallel_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(expmap(x, u), parallel_transp(x, u, v))`` in one call."""
        return self.expmap(x, u), self.parallel_transp(x, u, v)

    # -- sampling -------------------------------------------------------------------------------

    def random(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> ManifoldTensor:
        r"""Haar-uniform random point(s): QR (positive :math:`\operatorname{diag} R`) of a Gaussian.

        ``random(n, k)``, ``random(b, n, k)`` or ``random((b, n, k))``. The distribution of the
        subspace is the unique rotation-invariant one (Mezzadri, "How to generate random matrices
        from the classical compact groups", Notices AMS 2007). ``device`` defaults to the
        generator's device when a generator is given.
        """
        shape = size2shape(*size)
        ok, reason = self._check_shape(shape, "size")
        if not ok:
            raise ValueError(reason)
        if device is None and generator is not None:
            device = generator.device
        g = torch.randn(shape, dtype=dtype, device=device, generator=generator)
        return ManifoldTensor(_qr_signfix(g), manifold=self)

    random_uniform = random

    def origin(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = 42,
    ) -> ManifoldTensor:
        r"""The point :math:`[I_k; 0]`, the span of the first k coordinate vectors.

        ``seed`` is unused (kept for geoopt's signature).
        """
        shape = size2shape(*size)
        ok, reason = self._check_shape(shape, "size")
        if not ok:
            raise ValueError(reason)
        eye = torch.eye(shape[-2], shape[-1], dtype=dtype, device=device)
        return ManifoldTensor(eye.expand(shape).clone(), manifold=self)
