r"""Batched kernels of the Grassmann and Stiefel geometry (no argument checks).

The lowest layer of the geometry: :mod:`grassmann.stiefel`, :mod:`grassmann.angles` and
:mod:`grassmann.manifold` import from here and never from each other's private names (the split
of geoopt's ``manifolds/stereographic/math.py`` from its ``manifold.py``). Every kernel is batched
over leading dimensions, follows the device and dtype of its inputs, and assumes valid input
(orthonormal points of matching shapes and dtypes): the public callers check that.

Points are ``(..., n, k)`` matrices ``X`` with :math:`X^\top X = I_k`; tangent vectors of the
Grassmann manifold are horizontal, :math:`X^\top U = 0` (Edelman, Arias & Smith, "The geometry of
algorithms with orthogonality constraints", SIAM J. Matrix Anal. Appl. 20(2), 1998 -- EAS 1998;
Bendokat, Zimmermann & Absil, "A Grassmann manifold handbook: basic geometry and computational
aspects", arXiv:2011.13699, 2020 -- BZA 2020).

Autograd: a kernel that is asked for a differentiable result (grad mode on and an input that
requires grad) computes out of place; only the optimiser path, which geoopt runs under
:func:`torch.no_grad`, writes into spare buffers (``out=`` kernels and in-place solves).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# ----------------------------------------------------------------------------------------------
# small-matrix kernels
# ----------------------------------------------------------------------------------------------


def _tracks_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on ``tensors`` (then no ``out=`` or in-place use)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _as_linalg_dtype(a: torch.Tensor) -> torch.Tensor:
    """torch.linalg has no float16/bfloat16 kernels: compute those in float32."""
    return a.float() if a.dtype in (torch.float16, torch.bfloat16) else a


def _sym_funcm(
    lam: torch.Tensor, vecs: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``V diag(f(lam)) V^T`` for an eigendecomposition ``(lam, V)`` of a symmetric matrix."""
    return (vecs * f(lam).unsqueeze(-2)) @ vecs.mT


def _gram_eigh(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of the ``k x k`` Gram matrix ``U^T U`` (eigenvalues clamped >= 0).

    ``U^T U = V diag(s^2) V^T`` where ``U = P diag(s) V^T`` is the thin SVD; functions of the
    singular values that are even (``cos s``, ``sin(s) / s``) are therefore smooth functions of
    the Gram matrix and are computed accurately without the ``n x k`` SVD.
    """
    lam, vecs = torch.linalg.eigh(u.mT @ u)
    return lam.clamp_min(0), vecs


def _sinc(x: torch.Tensor) -> torch.Tensor:
    """``sin(x) / x`` with the value 1 at 0 (``torch.sinc`` is normalised by pi)."""
    return torch.sinc(x / torch.pi)


def _qr_signfix(a: torch.Tensor) -> torch.Tensor:
    """Householder QR with the signs of ``diag(R)`` made positive (the unique, continuous Q)."""
    q, r = torch.linalg.qr(a)
    d = torch.diagonal(r, dim1=-2, dim2=-1).sign()
    d = torch.where(d == 0, torch.ones_like(d), d)
    return q * d.unsqueeze(-2)


def _addmm(
    c: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    alpha: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``c + alpha * (a @ b)``, fused into one ``baddbmm`` / ``addmm`` where the shapes allow.

    ``out``: a spare contiguous tensor of the result's shape and dtype to write a ``baddbmm``
    into (it saves an allocation), or ``None``. It is not used for a differentiable call
    (autograd has no ``out=`` variants).
    """
    if c.ndim == a.ndim == b.ndim == 3 and a.shape[0] == b.shape[0] == c.shape[0]:
        if (
            out is not None
            and out.shape == c.shape
            and out.dtype == c.dtype
            and not _tracks_grad(c, a, b)
        ):
            return torch.baddbmm(c, a, b, alpha=alpha, out=out)
        return torch.baddbmm(c, a, b, alpha=alpha)
    if c.ndim == a.ndim == b.ndim == 2:
        return torch.addmm(c, a, b, alpha=alpha)
    return torch.add(c, a @ b, alpha=alpha)


# ----------------------------------------------------------------------------------------------
# principal angles
# ----------------------------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)


def _principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Principal angles (ascending) between orthonormal ``a`` and ``b`` (Knyazev & Argentati 2002).

    :math:`\cos\theta = \sigma(A^\top B)`, :math:`\sin\theta = \sigma((I - A A^\top) B)` (``B``
    the thinner factor); ``arcsin`` of the sines below :math:`\pi/4`, ``arccos`` of the cosines
    above, so that both ends keep an absolute accuracy of a few ulps.
    """
    if a.shape[-1] < b.shape[-1]:  # the sines come from the thinner side
        a, b = b, a
    c = a.mT @ b
    cos = torch.linalg.svdvals(c)  # descending -> angles ascending
    sin = torch.linalg.svdvals(b - a @ c).flip(-1)  # ascending -> angles ascending
    # The clamps keep the unused branch of torch.where finite under autograd (no 0 * inf).
    small = torch.asin(sin.clamp(0.0, 0.9))
    large = torch.acos(cos.clamp(0.0, 0.9))
    return torch.where(sin < _SQRT_HALF, small, large)


# ----------------------------------------------------------------------------------------------
# Grassmann kernels, evaluated on transposes
# ----------------------------------------------------------------------------------------------

# The hot-path kernels take the transposes ``xt = X^T`` etc. (``(..., k, n)``) and compute in
# that orientation: every large product is then a ``(k x k) @ (k x n)`` or ``(k x n) @ (n x k)``
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
    the solve is used with one thread, the bmm (into a fresh tensor) with more. Never for a
    differentiable call.
    """
    return (
        yt.device.type == "cpu"
        and torch.get_num_threads() == 1
        and yt.dtype == chol.dtype
        and yt.is_contiguous()
        and not _tracks_grad(yt)
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
    else ``None`` (always ``None`` for a differentiable call, see :func:`_retr_t_autograd`).

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
    if _tracks_grad(xt, ut):
        return _retr_t_autograd(xt, ut, polar), None
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


def _retr_t_autograd(xt: torch.Tensor, ut: torch.Tensor, polar: bool) -> torch.Tensor:
    """:func:`_retr_t` for a differentiable call: the same result, computed out of place.

    No buffer is overwritten and the repairs select with :func:`torch.where`; the rank repair
    recomputes the first pass from the repaired input, so that no NaN of a failed factorisation
    enters the graph. As in :func:`_retr_t`, devices other than the CPU make the second pass
    branch-free and have no rank repair (both would need a host sync).
    """
    yt = xt + ut
    qt, rho = _orth_pass(yt, polar)
    if qt.device.type != "cpu":
        return _orth_pass(qt, polar)[0]
    failed = ~(rho < 1.0 / torch.finfo(rho.dtype).eps)
    if bool(failed.any()):
        yt = torch.where(failed[..., None, None], _proj_t(xt, ut) + xt, yt)
        qt, rho = _orth_pass(yt, polar)
    need = ~(rho <= _COND_SECOND_PASS)
    if not bool(need.any()):
        return qt
    return torch.where(need[..., None, None], _orth_pass(qt, polar)[0], qt)


# An orthonormal basis computed in floating point is orthonormal to a few ulps; each exponential
# map adds a few more (see _expmap), and over a long run those add up (to 2e-4 in float32
# after 10^4 steps, before this repair). Above this many ulps the basis is repaired. The bound
# matters beyond orthonormality: the subspace an optimiser settles on was measured to be off by
# about twice this error (float32, 20 x 10 top-eigenspace problem).
_REORTH_ULPS = 16.0


def _reorth_t(yt: torch.Tensor) -> torch.Tensor:
    r"""Restore the orthonormality of the rows of ``yt`` (a transposed basis) where it drifted.

    ``G = Y^T Y`` (one bmm); where :math:`\max |G - I|` exceeds ``_REORTH_ULPS`` ulps of the
    dtype, :math:`Y` is replaced by its polar factor :math:`Y G^{-1/2}`, which spans the same
    subspace (the point of :math:`\mathrm{Gr}(n, k)` is unchanged) and moves the basis the least.
    On the CPU only the batch entries that need it are repaired (reading the errors is free).
    On other devices, and for a differentiable call, the repair is one Newton-Schulz step
    :math:`Y (3I - G) / 2` instead, a polynomial in ``G`` (branch-free, no host sync, and
    differentiable where the eigenvectors of :math:`G \approx I` are not); it leaves an error
    of :math:`\tfrac34 \|G - I\|^2`, nothing at the errors that rounding leaves.
    """
    gram = _as_linalg_dtype(yt @ yt.mT)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    if yt.device.type != "cpu":
        return (1.5 * eye - 0.5 * gram).to(yt.dtype) @ yt
    tol = _REORTH_ULPS * torch.finfo(yt.dtype).eps
    need = (gram - eye).abs().amax(dim=(-2, -1)) > tol
    if not bool(need.any()):
        return yt
    if _tracks_grad(yt):
        fix = torch.where(need[..., None, None], 1.5 * eye - 0.5 * gram, eye)
        return fix.to(yt.dtype) @ yt
    k, n = yt.shape[-2:]
    flat = yt.reshape(-1, k, n)
    idx = need.reshape(-1).nonzero().squeeze(-1)
    lam, vecs = torch.linalg.eigh(gram.reshape(-1, k, k)[idx])
    fix = _sym_funcm(lam.clamp_min(torch.finfo(lam.dtype).tiny), vecs, torch.rsqrt)
    flat[idx] = fix.to(yt.dtype) @ flat[idx]
    return flat.view(yt.shape)


def _sym_funcm_centred(
    lam: torch.Tensor, vecs: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    r"""``V diag(f(lam)) V^T`` formed as :math:`c I + V \operatorname{diag}(f(\lambda) - c) V^\top`.

    ``c`` is the midpoint of the values of ``f`` (per batch entry). The computed ``V`` is
    orthogonal only to about ``k`` ulps, and that error is multiplied by the values it carries:
    ``f`` itself in :func:`_sym_funcm`, only ``f - c`` here -- nearly nothing where the values
    cluster (``cos s`` and ``sinc s`` are all close to 1 for the small steps of an optimiser),
    at most half their spread otherwise.
    """
    values = f(lam)
    c = 0.5 * (values.amax(dim=-1, keepdim=True) + values.amin(dim=-1, keepdim=True))
    eye = torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device)
    return c.unsqueeze(-1) * eye + (vecs * (values - c).unsqueeze(-2)) @ vecs.mT


def _expmap(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""``Exp_X(U) = X V cos(S) V^T + U V diag(sin(s) / s) V^T`` with ``U^T U = V S^2 V^T``.

    Equal to EAS 1998 Thm 2.3, :math:`X V \cos(S) V^\top + P \sin(S) V^\top` for the thin SVD
    :math:`U = P S V^\top`, since :math:`P S = U V`; cos and sinc are even, hence smooth functions
    of :math:`S^2`, and rounding in the eigenvalues of the Gram matrix costs nothing. ``u`` must
    be horizontal. Evaluated transposed (the ``k x k`` factors are symmetric), with the factors
    centred (:func:`_sym_funcm_centred`): one map then costs 2-6 ulps of orthonormality
    (median, float32, n up to 2048) instead of the 7-8 ulps of ``V cos(S) V^T`` formed whole.
    What remains still adds up over many steps, so the result is re-orthonormalised where it is
    more than ``_REORTH_ULPS`` ulps from orthonormal (:func:`_reorth_t`): the error of a long run
    is bounded, whatever the number of steps.
    """
    lam, vecs = _gram_eigh(u)
    s = lam.sqrt()
    cos_m = _sym_funcm_centred(s, vecs, torch.cos)
    sinc_m = _sym_funcm_centred(s, vecs, _sinc)
    return _reorth_t(_addmm(sinc_m @ u.mT, cos_m, x.mT, 1.0)).mT


def _theta_over_sin(cos: torch.Tensor) -> torch.Tensor:
    r""":math:`\theta / \sin\theta` as a function of :math:`\cos\theta \in [0, 1]`.

    Smooth on the whole interval (:math:`1 + \theta^2/6 + \dots` near :math:`\theta = 0`,
    :math:`\pi/2` at :math:`\theta = \pi/2`) with a bounded derivative, so an absolute error of
    the cosine gives an error of the same size: the cosines of angles near 0 need not be
    resolved. ``1 - cos^2`` is formed as ``(1 - cos)(1 + cos)`` (exact where cos is near 1).
    """
    cos = cos.clamp(0.0, 1.0)
    sin = ((1.0 - cos) * (1.0 + cos)).sqrt()
    safe = torch.where(sin > 0, sin, 1.0)
    return torch.where(sin > 0, torch.atan2(sin, cos) / safe, 1.0)


def _logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Stable Grassmann logarithm, BZA 2020 Alg. 5.3, with the angles from the cosines.

    1. :math:`Y^\top X = Q S R^\top` (SVD) and :math:`Y_* = Y Q R^\top`: the representative of
       span(Y) with :math:`C = X^\top Y_* = R S R^\top` symmetric positive semi-definite (a
       valid Procrustes alignment also where :math:`X^\top Y` is singular).
    2. :math:`M = (I - X X^\top) Y_*` has :math:`M^\top M = I - C^2`, so
       :math:`\mathrm{Log}_X(Y) = M\, g(C)` with :math:`g(\cos\theta) = \theta / \sin\theta`
       (:func:`_theta_over_sin`), i.e. BZA's :math:`\hat Q \arcsin(\hat S) \hat R^\top`.

    With :math:`M R = Y Q - X R S` this is :math:`(Y Q - X R S)\, g(S)\, R^\top`: four
    ``n x k^2`` products and one ``k x k`` SVD, no Gram matrix of ``M``. ``g`` is smooth, so
    clusters of angles (where the singular vectors are not unique) cost no accuracy: near
    :math:`\pi/2` the cosines resolve the angles (an :math:`\arcsin` of the sines would lose
    half the digits, and pairing sines with cosines by eigenvectors mixes a cluster), near 0
    ``g`` is flat and the direction comes from :math:`M` itself.
    """
    q, cos, rh = torch.linalg.svd(y.mT @ x)
    g = _theta_over_sin(cos).unsqueeze(-2)
    a = y @ q  # Y Q = Y_* R
    b = x @ rh.mT  # X R
    return (a * g - b * (cos.unsqueeze(-2) * g)) @ rh


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
