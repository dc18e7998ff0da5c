r"""The Grassmann manifold :math:`\mathrm{Gr}(n, k)` as a :class:`geoopt.Manifold`.

A point is the k-dimensional subspace spanned by the columns of an ``(..., n, k)`` matrix ``X``
with :math:`X^\top X = I_k`; ``X Q`` for an orthogonal ``Q`` is the same point. Tangent vectors
are represented by their horizontal lifts :math:`\{U : X^\top U = 0\}` with the metric
:math:`\langle U, V\rangle = \operatorname{tr}(U^\top V)` (Edelman, Arias & Smith, "The geometry
of algorithms with orthogonality constraints", SIAM J. Matrix Anal. Appl. 20(2), 1998 -- EAS 1998;
Bendokat, Zimmermann & Absil, "A Grassmann manifold handbook: basic geometry and computational
aspects", arXiv:2011.13699, 2020 -- BZA 2020).

Performance: the maps work through ``k x k`` matrices (``eigh`` of :math:`U^\top U`, the SVD of
:math:`Y^\top X`) instead of ``n x k`` SVDs: the exponential map and parallel transport are even
functions of the singular values of ``U``, and the logarithm is a smooth function of the cosine
matrix that the alignment step computes anyway. Only the principal angles
(:func:`grassmann.angles.principal_angles`, used by :meth:`Grassmann.dist`) need an ``n x k``
SVD, to keep tiny angles accurate. The optimiser hot path (:meth:`Grassmann.proju`,
:meth:`Grassmann.retr`, :meth:`Grassmann.retr_transp`) is evaluated on the transposes
``(..., k, n)`` with fused ``baddbmm`` products, computes the retraction once per step, and never
synchronises with the device or upcasts to float64. The kernels live in
:mod:`grassmann._linalg`, shared with :mod:`grassmann.angles`.
"""

from __future__ import annotations

import torch
from geoopt.manifolds.base import Manifold

from grassmann._linalg import (
    _expmap,
    _logmap,
    _parallel_transp,
    _principal_angles,
    _proj_t,
    _proju,
    _retr_t,
)
from grassmann._validation import check_choice
from grassmann.stiefel import (
    _check_like,
    _check_matrix,
    _check_point,
    _check_same_kind,
    _check_same_shape,
    _Sampling,
    orthonormalize,
)

__all__ = ["Grassmann"]

GRASSMANN_RETRACTIONS = ("qr", "polar", "expmap")


# ----------------------------------------------------------------------------------------------
# the manifold
# ----------------------------------------------------------------------------------------------


class Grassmann(_Sampling, Manifold):
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
        call). ``"qr"`` (default): :math:`\operatorname{qf}(X + U)` with positive
        :math:`\operatorname{diag} R`, computed by one Cholesky-QR pass (a Gram matrix and a
        triangular solve; the Gram matrix :math:`I + U^\top U` is well conditioned for moderate
        steps, so one pass is accurate; a second pass is made for the batch entries of a large
        anisotropic step). ``"polar"``: :math:`(X + U)(I + U^\top U)^{-1/2}`, which keeps the
        representative closest to ``X + U`` (best for momentum). ``"expmap"``: the exact
        exponential map (:meth:`expmap`; no error accumulates over long runs either, see there).
        ``"qr"`` and ``"polar"`` use ``u`` as given (see :meth:`retr` for a
        non-horizontal ``u``); ``"expmap"`` first projects it to the horizontal space (geoopt's
        momentum buffer starts from the raw Euclidean gradient, which is not horizontal).
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
        _check_same_kind("x", x, "y", y)

    # -- projections and metric ---------------------------------------------------------------

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest point (polar factor, :func:`grassmann.orthonormalize` with ``"polar"``).

        The polar factor moves an almost-orthonormal ``X`` the least, so optimiser states kept
        in the old representative stay valid after ``stabilize``.
        """
        return orthonormalize(x, "polar", validate=False)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Horizontal projection :math:`U - X (X^\top U)` (EAS 1998 Sec. 2.5)."""
        _check_like(self, "x", x, u=u)
        return _proju(x, u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient :math:`G - X (X^\top G)` of the Euclidean gradient ``G``."""
        _check_like(self, "x", x, u=u)
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

        ``"qr"`` and ``"polar"``: one Cholesky-QR / polar pass on :math:`Y = X + U` (for a
        horizontal ``U`` the Gram matrix is :math:`Y^\top Y = I + U^\top U \succeq I`) is exact
        to a few ulps; a second pass is made where a large anisotropic step makes the Gram matrix
        ill-conditioned (estimated condition number above 8), so the result is orthonormal to
        about :math:`10 \varepsilon` for any step. ``u`` is used as given: the result has
        orthonormal columns for any ``u``, and a non-horizontal :math:`U = U_h + X A`
        (geoopt's ``RiemannianSGD`` starts its momentum buffer from the raw Euclidean gradient,
        so its first step is one) gives :math:`\operatorname{span}(X (I + A) + U_h)`, the
        retraction of the tangent vector :math:`U_h (I + A)^{-1}`. Not projecting saves two
        passes over ``(..., n, k)`` per call (the product :math:`X^\top U`, and the update
        :math:`X (I - X^\top U) + U` becomes a plain sum). On the CPU, where
        :math:`X + U` is numerically rank-deficient (only possible for a non-horizontal ``u``,
        or a step of norm :math:`\gtrsim \varepsilon^{-1/2}`), the horizontal part :math:`U_h`
        is retracted instead. ``"expmap"``: ``u`` is first projected to the horizontal space
        (the exponential map of a non-horizontal ``u`` would leave the manifold).

        The result is laid out column-major (its transpose is contiguous), the layout of
        :class:`grassmann.heads.GrassmannHead`.
        """
        _check_like(self, "x", x, u=u)
        return self._retr_t(x, u)[0].mT

    def _retr_t(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Transpose of :meth:`retr` (contiguous ``(..., k, n)``) and a spare (see _retr_t)."""
        if self.retraction == "expmap":
            return _expmap(x, _proju(x, u)).mT, None
        return _retr_t(x.mT, u.mT, self.retraction == "polar")

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map (EAS 1998 Thm 2.3) :math:`X V\cos(S)V^\top + P\sin(S)V^\top`.

        ``u`` is projected to the horizontal space first (a no-op up to rounding for a
        horizontal ``u``; any other ``u`` stands for its horizontal part). Computed as
        :math:`X V \cos(S) V^\top + U V \operatorname{diag}(\sin(s)/s) V^\top` from the
        eigendecomposition :math:`U^\top U = V S^2 V^\top` (no ``n x k`` SVD); the ``k x k``
        factors are formed as :math:`cI + V (f(S) - cI) V^\top` with ``c`` the midpoint of the
        values, so that the rounding of ``V`` costs little: one map adds 2-6 ulps of
        orthonormality.

        The result has orthonormal columns to about 16 ulps, :math:`\max |Y^\top Y - I| \lesssim 16
        \varepsilon` (``2e-6`` in float32), at every step of a run of any length: where the
        result (or a drifted ``x``) is further from orthonormal, it is replaced by its polar
        factor, which spans the same subspace (from the Gram matrix the check computes anyway:
        one more product, on the batch entries that need it; in measured float32 optimiser runs
        a few times per thousand steps). On the CPU the check reads the error (free there); on
        other devices, to avoid a host sync, every result gets one Newton-Schulz step
        :math:`Y (3I - Y^\top Y)/2` instead, which leaves :math:`\tfrac34 \|Y^\top Y - I\|^2`.
        """
        _check_like(self, "x", x, u=u)
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
        self._points(x, y)
        d = torch.linalg.vector_norm(_principal_angles(x, y), dim=-1)
        return d[..., None, None] if keepdim else d

    # -- transports -----------------------------------------------------------------------------

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""Vector transport by projection :math:`\operatorname{proj}_Y(V)`.

        Reference: Absil, Mahony & Sepulchre 2008, Sec. 8.1.3.
        """
        _check_like(self, "y", y, x=x, v=v)
        return _proju(y, v)

    def retr_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Retract ``u`` at ``x`` (:meth:`retr`) and transport ``v`` there by projection.

        The retraction is computed once; the transport is :math:`V - Y (Y^\top V)`, one bmm and
        one fused ``baddbmm`` (evaluated transposed). For ``"qr"`` that is six passes over
        ``(..., n, k)`` tensors in all -- the sum :math:`X + U`, its Gram matrix, :math:`Q^\top
        = L^{-1} Y^\top`, :math:`Y^\top V`, and the ``baddbmm`` (a copy and a product) -- and
        just two allocations, the results: with one CPU thread :math:`L^{-1} Y^\top` is a
        triangular solve in place of :math:`X + U`; with more it is a (multi-threaded) bmm and
        the transport is written into the then free :math:`X + U`.
        """
        _check_like(self, "x", x, u=u, v=v)
        yt, spare = self._retr_t(x, u)
        return yt.mT, _proj_t(yt, v.mT, spare).mT

    def expmap_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expmap` of ``u`` at ``x`` and transport of ``v`` there by projection."""
        _check_like(self, "x", x, u=u, v=v)
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
        for name, vec in (("u", u), ("v", v)):
            _check_same_shape("x", x, name, _check_matrix(name, vec, finite=False))
            _check_same_kind("x", x, name, vec)
        return _parallel_transp(x, u, v, float(t))

    def expmap_parallel_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(expmap(x, u), parallel_transp(x, u, v))`` in one call."""
        return self.expmap(x, u), self.parallel_transp(x, u, v)

    # -- sampling and dimension (random, random_uniform, origin, dim: see _Sampling) ----------

    def _point_dim(self, n: int, k: int) -> int:
        r""":math:`\dim \mathrm{Gr}(n, k) = k (n - k)`, the dimension of the horizontal space
        :math:`\{U : X^\top U = 0\}` (EAS 1998 Sec. 2.5)."""
        return k * (n - k)
