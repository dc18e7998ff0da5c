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

from grassmann._validation import check_choice, check_int
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


def _addmm(
    c: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    alpha: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``c + alpha * (a @ b)``, fused into one ``baddbmm`` / ``addmm`` where the shapes allow.

    ``out``: a spare contiguous tensor of the result's shape and dtype to write a ``baddbmm``
    into (it saves an allocation), or ``None``.
    """
    if c.ndim == a.ndim == b.ndim == 3 and a.shape[0] == b.shape[0] == c.shape[0]:
        if out is not None and out.shape == c.shape and out.dtype == c.dtype:
            return torch.baddbmm(c, a, b, alpha=alpha, out=out)
        return torch.baddbmm(c, a, b, alpha=alpha)
    if c.ndim == a.ndim == b.ndim == 2:
        return torch.addmm(c, a, b, alpha=alpha)
    return torch.add(c, a @ b, alpha=alpha)


# The kernels below take the transposes ``xt = X^T`` etc. (``(..., k, n)``) and compute in that
# orientation: every large product is then a ``(k x k) @ (k x n)`` or ``(k x n) @ (n x k)``
# batched matmul with ``n`` contiguous, which torch's CPU bmm runs 2-3x faster than the
# ``(n x k) @ (k x k)`` form for either memory layout of ``X`` (and it needs no copy for the
# column-major bases of :class:`grassmann.heads.GrassmannHead`, whose ``X^T`` is contiguous).


def _proj_t(xt: torch.Tensor, ut: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`(U - X X^\top U)^\top = U^\top - (U^\top X) X^\top` from ``xt``, ``ut``."""
    return _addmm(ut, ut @ xt.mT, xt, -1.0, out)


def _proju(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Horizontal projection :math:`U - X (X^\top U)`: one bmm and one fused ``baddbmm``."""
    return _proj_t(x.mT, u.mT).mT


# Single-pass orthonormalisation loses about eps * cond(Y^T Y) of orthonormality (Yamamoto et al.
# 2015); above this bound on the condition number a second pass is made (see _retr_t).
_COND_SECOND_PASS = 8.0


def _norm1(a: torch.Tensor) -> torch.Tensor:
    """Matrix 1-norm (largest absolute column sum) of a batch of square matrices."""
    return a.abs().sum(dim=-2).amax(dim=-1)


def _solve_in_place(yt: torch.Tensor, chol: torch.Tensor) -> bool:
    """Whether :func:`_orth_pass` should overwrite ``yt`` by a triangular solve.

    On the CPU the batched solve costs what a bmm costs and needs no output allocation, but
    torch runs it on one thread (a loop of LAPACK calls), whereas a bmm uses all of them: so
    the solve is used with one thread, the bmm (into a fresh tensor) with more.
    """
    return (
        yt.device.type == "cpu"
        and torch.get_num_threads() == 1
        and yt.dtype == chol.dtype
        and yt.is_contiguous()
    )


def _orth_pass(yt: torch.Tensor, polar: bool) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One Cholesky-QR (or polar) pass: ``(Q^T, rho)``, ``rho >= cond(Y^T Y)`` (an estimate).

    ``G = Y^T Y`` (one bmm). QR: :math:`Q^\top = L^{-1} Y^\top` for the Cholesky factor
    :math:`G = L L^\top` (:math:`Q = Y L^{-\top} = Y R^{-1}`, the Q of the QR factorisation
    with positive :math:`\operatorname{diag} R`): a bmm, or a triangular solve that overwrites
    ``yt`` (a temporary of the caller; see :func:`_solve_in_place`); ``rho`` =
    :math:`\|G\|_1 \|G^{-1}\|_1` with :math:`G^{-1} = L^{-\top} L^{-1}`, an upper bound on the
    2-norm condition number of the symmetric ``G`` (and at most ``k`` times it). Polar:
    :math:`Q^\top = G^{-1/2} Y^\top` (``eigh``), ``rho`` the exact eigenvalue ratio (infinite
    for a singular ``G``). The ``k x k`` work is done in float32 at least (torch.linalg has no
    half-precision kernels).
    """
    gram = _as_linalg_dtype(yt @ yt.mT)
    if polar:
        lam, vecs = torch.linalg.eigh(gram)
        rho = torch.where(lam[..., 0] > 0, lam[..., -1] / lam[..., 0], torch.inf)
        m = _sym_funcm(lam.clamp_min(torch.finfo(lam.dtype).tiny), vecs, torch.rsqrt)
        return m.to(yt.dtype) @ yt, rho
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    chol = torch.linalg.cholesky_ex(gram)[0]
    m = torch.linalg.solve_triangular(chol, eye, upper=False)
    # 1-norm condition number, an upper bound on the 2-norm one for symmetric G
    rho = _norm1(gram) * _norm1(m.mT @ m)
    if _solve_in_place(yt, chol):
        return torch.linalg.solve_triangular(chol, yt, upper=False, out=yt), rho
    return m.to(yt.dtype) @ yt, rho


def _retr_t(
    xt: torch.Tensor, ut: torch.Tensor, polar: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Transposed QR / polar retraction :math:`\operatorname{qf}(X + U)` of ``u`` as given.

    Returns ``(Q^T, spare)``: ``spare`` is the temporary :math:`Y^\top` where the result did not
    overwrite it (a contiguous tensor of the broadcast shape that the caller may write into),
    else ``None``.

    :math:`Y^\top = X^\top + U^\top` (one elementwise pass into a fresh contiguous tensor),
    then one Cholesky-QR (or polar) pass (:func:`_orth_pass`). It is exact to about
    :math:`\varepsilon \operatorname{cond}(Y^\top Y)`, a few ulps for moderate steps (for a
    horizontal ``U`` the Gram matrix is :math:`I + U^\top U \succeq I`); where the estimated
    condition number exceeds ``_COND_SECOND_PASS`` (a large, anisotropic step) a second pass
    restores full accuracy. Where :math:`X + U` is numerically rank-deficient (condition
    estimate not below :math:`1/\varepsilon`, which needs a non-horizontal ``U`` or a huge
    step) the retraction is recomputed from the horizontal part :math:`U - X X^\top U` (Gram
    matrix :math:`\succeq I`, never singular). On the CPU both repairs run only on the batch
    entries that need them (reading the estimate is free); on other devices the second pass
    runs on the whole batch, branch-free, to avoid a host sync, and there is no rank repair.
    """
    shape = torch.broadcast_shapes(xt.shape, ut.shape)
    yt = torch.add(xt, ut, out=torch.empty(shape, dtype=xt.dtype, device=xt.device))
    qt, rho = _orth_pass(yt, polar)
    spare = None if qt is yt else yt
    if qt.device.type != "cpu":
        return _orth_pass(qt, polar)[0], spare
    need = ~(rho <= _COND_SECOND_PASS)  # NaN (a failed factorisation) included
    if not bool(need.any()):
        return qt, spare
    k, n = shape[-2:]
    need = need.expand(shape[:-2]).reshape(-1)
    flat = qt.view(-1, k, n)
    failed = ~(rho < 1.0 / torch.finfo(rho.dtype).eps)
    if bool(failed.any()):
        idx = failed.expand(shape[:-2]).reshape(-1).nonzero().squeeze(-1)
        sub_x = xt.expand(shape).reshape(-1, k, n)[idx]
        sub_u = ut.expand(shape).reshape(-1, k, n)[idx]
        flat[idx] = _orth_pass(_proj_t(sub_x, sub_u).add_(sub_x), polar)[0]
    if bool(need.all()):
        return _orth_pass(qt, polar)[0], spare
    idx = need.nonzero().squeeze(-1)
    flat[idx] = _orth_pass(flat[idx], polar)[0]
    return qt, spare


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


def _checked_size(size: tuple) -> tuple[int, ...]:
    """``random(n, k)`` / ``random(b, n, k)`` / ``random((b, n, k))`` sizes as a checked shape."""
    shape = size2shape(*size)
    for i, dim in enumerate(shape):  # k = 0 is left to _check_shape, which names k
        check_int(f"size[{i}]", dim, minimum=0 if i == len(shape) - 1 else 1)
    return tuple(int(d) for d in shape)


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
        call). ``"qr"`` (default): :math:`\operatorname{qf}(X + U)` with positive
        :math:`\operatorname{diag} R`, computed by one Cholesky-QR pass (a Gram matrix and a
        triangular solve; the Gram matrix :math:`I + U^\top U` is well conditioned for moderate
        steps, so one pass is accurate; a second pass is made for the batch entries of a large
        anisotropic step). ``"polar"``: :math:`(X + U)(I + U^\top U)^{-1/2}`, which keeps the
        representative closest to ``X + U`` (best for momentum). ``"expmap"``: the exact
        exponential map. ``"qr"`` and ``"polar"`` use ``u`` as given (see :meth:`retr` for a
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

    def _same_shape(self, x: torch.Tensor, /, **others: torch.Tensor) -> None:
        """Shape-only check for the hot path (no host sync): ``x`` is ``(..., n, k)`` with
        ``1 <= k <= n`` and every other tensor has the same ``(n, k)``."""
        ok, reason = self._check_shape(x.shape, "x")
        if not ok:
            raise ValueError(reason)
        for name, t in others.items():
            if t.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"{name} must have the point's shape (..., n, k) = (..., {x.shape[-2]}, "
                    f"{x.shape[-1]}), got {tuple(t.shape)}"
                )

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
        self._same_shape(x, u=u)
        return _proju(x, u)

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Riemannian gradient :math:`G - X (X^\top G)` of the Euclidean gradient ``G``."""
        self._same_shape(x, u=u)
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
        self._same_shape(x, u=u)
        return self._retr_t(x, u)[0].mT

    def _retr_t(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Transpose of :meth:`retr` (contiguous ``(..., k, n)``) and a spare (see _retr_t)."""
        if self.retraction == "expmap":
            return _expmap(x, _proju(x, u)).mT, None
        return _retr_t(x.mT, u.mT, self.retraction == "polar")

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Exponential map (EAS 1998 Thm 2.3) :math:`X V\cos(S)V^\top + P\sin(S)V^\top`.

        ``u`` is projected to the horizontal space first (a no-op up to rounding for a
        horizontal ``u``; any other ``u`` stands for its horizontal part), so that the result
        always has orthonormal columns. Computed as
        :math:`X V \cos(S) V^\top + U V \operatorname{diag}(\sin(s)/s) V^\top` from the
        eigendecomposition :math:`U^\top U = V S^2 V^\top` (no ``n x k`` SVD).
        """
        self._same_shape(x, u=u)
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
        self._same_shape(y, start=x, v=v)
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
        self._same_shape(x, u=u, v=v)
        yt, spare = self._retr_t(x, u)
        return yt.mT, _proj_t(yt, v.mT, spare).mT

    def expmap_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expmap` of ``u`` at ``x`` and transport of ``v`` there by projection."""
        self._same_shape(x, u=u, v=v)
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
        shape = _checked_size(size)
        ok, reason = self._check_shape(shape, "size")
        if not ok:
            raise ValueError(reason)
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
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
        shape = _checked_size(size)
        ok, reason = self._check_shape(shape, "size")
        if not ok:
            raise ValueError(reason)
        eye = torch.eye(shape[-2], shape[-1], dtype=dtype, device=device)
        return ManifoldTensor(eye.expand(shape).clone(), manifold=self)
