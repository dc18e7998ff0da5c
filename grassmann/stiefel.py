r"""Orthonormalisation and the Stiefel retractions that geoopt lacks.

A point of the Stiefel manifold :math:`\mathrm{St}(n, k)` is an ``n x k`` matrix with orthonormal
columns, :math:`X^\top X = I_k`; it is also the representative of a point of the Grassmann
manifold, so the checks and the orthonormalisation here serve :mod:`grassmann.manifold` and
:mod:`grassmann.angles` too.

geoopt ships :class:`geoopt.EuclideanStiefel` (QR retraction, exact exponential map) and
:class:`geoopt.CanonicalStiefel` (Cayley-like retraction with a dense ``n x n`` solve). This module
adds the low-rank Cayley retraction (Wen & Yin 2013; Li, Li & Todorovic 2020) and the polar
retraction (Absil, Mahony & Sepulchre 2008, Sec. 4.1.1), both costing :math:`O(n k^2)`, and the
matmul-only Cholesky-QR orthonormalisation for tall-skinny batches on GPUs.

All functions are batched over leading dimensions; device and dtype follow the inputs.
"""

from __future__ import annotations

import abc
import math

import torch
from geoopt import EuclideanStiefel, ManifoldTensor
from geoopt.manifolds.base import Manifold
from geoopt.utils import size2shape

from grassmann._linalg import (
    _as_linalg_dtype,
    _gram_eigh,  # noqa: F401  (re-exported: importable from here as before)
    _qr_signfix,
    _sym_funcm,
)
from grassmann._validation import check_choice, check_finite, check_int, check_tensor

__all__ = [
    "Stiefel",
    "cayley_retraction",
    "orthonormalize",
    "polar_retraction",
    "qr_retraction",
]

ORTHONORMALIZE_METHODS = ("qr", "polar", "cholesky_qr")
STIEFEL_RETRACTIONS = ("qr", "polar", "cayley", "expmap")


# ----------------------------------------------------------------------------------------------
# module-private checks shared by manifold.py and angles.py
# ----------------------------------------------------------------------------------------------


def _orth_atol(dtype: torch.dtype) -> float:
    """Tolerance on ``max |X^T X - I|`` below which ``X`` counts as orthonormal.

    ``10 sqrt(eps)``: 3.5e-3 in float32, 1.5e-7 in float64. Loose enough to accept points that
    drifted by rounding during training, tight enough to reject a matrix that is not orthonormal.
    """
    return 10.0 * torch.finfo(dtype).eps ** 0.5


def _check_matrix(name: str, x: object, *, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a real floating ``(..., n, k)`` tensor with ``1 <= k <= n``."""
    x = check_tensor(name, x, min_ndim=2)
    n, k = x.shape[-2], x.shape[-1]
    if k < 1:
        raise ValueError(
            f"{name} must have at least one column (k >= 1), got shape {tuple(x.shape)} with k={k}"
        )
    if k > n:
        raise ValueError(
            f"{name} must have at most as many columns as rows (k <= n), got shape "
            f"{tuple(x.shape)} with k={k} > n={n}"
        )
    if finite:
        check_finite(name, x)
    return x


def _check_point(name: str, x: object, *, validate: bool = True) -> torch.Tensor:
    """Check that ``x`` is an ``(..., n, k)`` matrix with orthonormal columns.

    The shape is always checked (free). With ``validate=True`` also the values: finite entries and
    ``max |X^T X - I| <= 10 sqrt(eps)``; this costs :math:`O(n k^2)` and one host sync.
    """
    x = _check_matrix(name, x, finite=validate)
    if validate:
        err = _orthonormality_error(x)
        atol = _orth_atol(x.dtype)
        if err > atol:
            raise ValueError(
                f"{name} must have orthonormal columns (X^T X = I within {atol:.1e}), got "
                f"max |X^T X - I| = {err:.3e}; orthonormalize it first, e.g. with "
                f"grassmann.orthonormalize({name})"
            )
    return x


def _orthonormality_error(x: torch.Tensor) -> float:
    """``max |X^T X - I|`` over the whole batch (one host sync)."""
    xtx = x.mT @ x
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return float((xtx - eye).abs().amax()) if xtx.numel() else 0.0


def _check_same_n(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Both arguments must live in the same ambient space ``R^n``."""
    if a.shape[-2] != b.shape[-2]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of rows n, got {name_a} with shape "
            f"{tuple(a.shape)} (n={a.shape[-2]}) and {name_b} with shape {tuple(b.shape)} "
            f"(n={b.shape[-2]})"
        )


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Both arguments must have the same ``(n, k)`` (leading dimensions may broadcast)."""
    _check_same_n(name_a, a, name_b, b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same number of columns k, got {name_a} with "
            f"shape {tuple(a.shape)} (k={a.shape[-1]}) and {name_b} with shape "
            f"{tuple(b.shape)} (k={b.shape[-1]})"
        )


def _check_same_kind(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Both arguments must have the same dtype and device: no silent promotion or transfer.

    Free (attributes only, no host sync), so the optimiser hot path runs it too.
    """
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_b} must have the dtype of {name_a} ({a.dtype}), got {b.dtype}; convert one "
            f"of them first, e.g. {name_b}.to({name_a}.dtype)"
        )
    if a.device != b.device:
        raise ValueError(
            f"{name_b} must be on the device of {name_a} ({a.device}), got {b.device}; move one "
            f"of them first, e.g. {name_b}.to({name_a}.device)"
        )


def _check_like(manifold: Manifold, name: str, x: torch.Tensor, /, **others: torch.Tensor) -> None:
    """Free check of a manifold's hot path (attributes only, no host sync).

    ``x`` (called ``name``) has a valid point shape for ``manifold`` (``(..., n, k)``, ``k <=
    n``) and every other tensor has its ``(n, k)`` (``ValueError``), dtype (``TypeError``) and
    device (``ValueError``), each error naming the tensor.
    """
    ok, reason = manifold._check_shape(x.shape, name)
    if not ok:
        raise ValueError(reason)
    for other, t in others.items():
        if t.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"{other} must have the shape (..., n, k) of the point {name}, (..., "
                f"{x.shape[-2]}, {x.shape[-1]}), got {tuple(t.shape)}"
            )
        _check_same_kind(name, x, other, t)


def _checked_size(size: tuple) -> tuple[int, ...]:
    """``random(n, k)`` / ``random(b, n, k)`` / ``random((b, n, k))`` sizes as a checked shape."""
    shape = size2shape(*size)
    for i, dim in enumerate(shape):  # k = 0 is left to the shape check, which names k
        check_int(f"size[{i}]", dim, minimum=0 if i == len(shape) - 1 else 1)
    return tuple(int(d) for d in shape)


def _checked_dtype(dtype: object) -> torch.dtype | None:
    """``dtype`` of a sampler: ``None`` (torch's default), float32 or float64."""
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64 (or None), got {dtype}")
    return dtype


def _checked_device(device: object) -> torch.device | None:
    """``device`` of a sampler: ``None`` or a device that exists on this machine.

    torch reports a missing device as an ``AssertionError`` ("Torch not compiled with CUDA
    enabled") or a ``RuntimeError``; this names the argument instead.
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (AssertionError, RuntimeError, TypeError) as exc:
        hint = "" if torch.cuda.is_available() else " (CUDA is not available here)"
        raise ValueError(
            f"device must be an available torch device such as 'cpu'{hint}, got {device!r}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return dev


class _Sampling(abc.ABC):
    """``random``, ``origin`` and ``dim`` of the orthonormal-basis manifolds (Stiefel, Grassmann).

    A mixin placed before the geoopt base class; the manifold supplies ``_check_shape`` (geoopt's
    API) and ``_point_dim(n, k)``, the dimension of one point's manifold.
    """

    @abc.abstractmethod
    def _point_dim(self, n: int, k: int) -> int:
        """Dimension of the manifold of one ``n x k`` point."""

    def _checked_shape(self, size: tuple) -> tuple[int, ...]:
        shape = _checked_size(size)
        ok, reason = self._check_shape(shape, "size")
        if not ok:
            raise ValueError(reason)
        return shape

    def random(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> ManifoldTensor:
        r"""Haar-uniform random point(s): QR (positive :math:`\operatorname{diag} R`) of a Gaussian.

        ``random(n, k)``, ``random(b, n, k)`` or ``random((b, n, k))``. With the sign fix the Q
        factor of a Gaussian matrix is uniform on the Stiefel manifold, and its span on the
        Grassmann manifold (the unique rotation-invariant distributions; Mezzadri, "How to
        generate random matrices from the classical compact groups", Notices AMS 2007; geoopt's
        Stiefel ``random_naive`` omits the fix). ``device`` defaults to the generator's device
        when a generator is given; ``dtype`` is float32 or float64 (``None``: torch's default). A
        bad size, dtype or device is a ``ValueError`` / ``TypeError`` naming it.
        """
        shape = self._checked_shape(size)
        dtype = _checked_dtype(dtype)
        device = _checked_device(device)
        if device is None and generator is not None:
            device = generator.device
        g = torch.randn(shape, dtype=dtype, device=device, generator=generator)
        return ManifoldTensor(_qr_signfix(g), manifold=self)

    def random_uniform(self, *size: int | tuple[int, ...], **kwargs: object) -> ManifoldTensor:
        """The same as :meth:`random` (geoopt's name for a uniform sampler)."""
        return self.random(*size, **kwargs)

    def origin(
        self,
        *size: int | tuple[int, ...],
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = 42,
    ) -> ManifoldTensor:
        r"""The point :math:`[I_k; 0]`, the first k coordinate vectors (``seed`` is unused, kept
        for geoopt's signature)."""
        shape = self._checked_shape(size)
        eye = torch.eye(
            shape[-2], shape[-1], dtype=_checked_dtype(dtype), device=_checked_device(device)
        )
        return ManifoldTensor(eye.expand(shape).clone(), manifold=self)

    def dim(self, *size: int | tuple[int, ...]) -> int:
        """Dimension of the manifold of points of shape ``size`` (``dim(n, k)``, or ``dim(b, n,
        k)`` for the product manifold of a batch: ``b`` times as much)."""
        *batch, n, k = self._checked_shape(size)
        return math.prod(batch) * self._point_dim(n, k)


# ----------------------------------------------------------------------------------------------
# CholeskyQR2 and orthonormalisation
# ----------------------------------------------------------------------------------------------


def _cholesky_qr2(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CholeskyQR2: two passes of ``Q = A R^{-1}``, ``R = chol(A^T A)^T``.

    Returns ``(Q, info)`` where ``info > 0`` marks batch entries whose Cholesky factorisation
    failed (``A`` numerically rank deficient, ``cond(A) >~ 1 / sqrt(eps)``). Matmul-only apart
    from the ``k x k`` factorisations. Reference: Fukaya, Nakatsukasa, Yanagisawa & Yamamoto,
    "CholeskyQR2: a simple and communication-avoiding algorithm for computing a tall-skinny QR
    factorization", ScalA 2014.
    """
    # Computed transposed, Q^T = L^{-1} A^T with the explicit k x k inverse: a batched
    # (k x k) @ (k x n) matmul, many times faster on the CPU than solve_triangular(left=False)
    # on (..., n, k) (which is pathologically slow for row-major batches).
    qt = a.mT
    info = None
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    for _ in range(2):
        chol, inf = torch.linalg.cholesky_ex(qt @ qt.mT)
        info = inf if info is None else info | inf
        qt = torch.linalg.solve_triangular(chol, eye, upper=False) @ qt
    return qt.mT, info


def orthonormalize(A: torch.Tensor, method: str = "qr", *, validate: bool = True) -> torch.Tensor:
    r"""Orthonormalise the columns of ``A`` (batched over leading dimensions).

    Parameters
    ----------
    A : torch.Tensor
        ``(..., n, k)`` real floating matrix with ``1 <= k <= n``, of full column rank for a result
        that spans the same subspace.
    method : {"qr", "polar", "cholesky_qr"}
        ``"qr"``: Householder QR with the signs of :math:`\operatorname{diag}(R)` made positive,
        :math:`A = QR`; the unique Q, continuous in ``A`` and Haar-distributed for Gaussian ``A``.

        ``"polar"``: the orthogonal polar factor :math:`Q = U V^\top` of the thin SVD
        :math:`A = U \Sigma V^\top`, i.e. :math:`A (A^\top A)^{-1/2}`, the orthonormal matrix
        nearest to ``A`` in the Frobenius norm (Higham 1986).

        ``"cholesky_qr"``: CholeskyQR2, :math:`Q = A R^{-1}` with
        :math:`R^\top R = A^\top A` applied twice (Fukaya et al. 2014); matmul-only, the fast
        choice for batches of tall-skinny matrices on a GPU. It yields the same Q as ``"qr"``
        (positive :math:`\operatorname{diag}(R)`). If the Cholesky factorisation fails anywhere
        in the batch (``cond(A)`` beyond about :math:`1/\sqrt{\varepsilon}`), the whole batch
        falls back to ``"qr"``; detecting this costs one host sync.
    validate : bool
        Check that ``A`` is finite (one host sync). Shape checks are always done.

    Returns
    -------
    torch.Tensor
        ``(..., n, k)`` with orthonormal columns, same dtype and device as ``A``
        (float16/bfloat16 inputs are computed in float32 and cast back).

    Raises
    ------
    ValueError
        If ``k > n``, ``k < 1``, ``A`` has non-finite entries or ``method`` is unknown.
    """
    A = _check_matrix("A", A, finite=validate)
    check_choice("method", method, ORTHONORMALIZE_METHODS)
    a = _as_linalg_dtype(A)
    if method == "qr":
        q = _qr_signfix(a)
    elif method == "polar":
        u, _, vh = torch.linalg.svd(a, full_matrices=False)
        q = u @ vh
    else:
        q, info = _cholesky_qr2(a)
        if bool((info > 0).any()):
            q = _qr_signfix(a)
    return q.to(A.dtype)


# ----------------------------------------------------------------------------------------------
# Stiefel retractions
# ----------------------------------------------------------------------------------------------


def qr_retraction(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""QR retraction :math:`R_X(U) = \operatorname{qf}(X + U)`, with positive diag(R).

    Reference: Absil, Mahony & Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008,
    Example 4.1.3. Computed by CholeskyQR2 (matmul-only; the Stiefel tangent ``U`` need not be
    horizontal, so the second pass is kept): for a tangent ``U`` the Gram matrix
    :math:`(X + U)^\top (X + U) = I + U^\top U` is well conditioned, so this is as accurate as
    Householder QR for steps up to :math:`\|U\|_2 \approx \varepsilon^{-1/2}`.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    u : torch.Tensor
        ``(..., n, k)`` tangent vector at ``x``.

    Returns
    -------
    torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    """
    return _cholesky_qr2(x + u)[0]


def polar_retraction(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Polar retraction :math:`R_X(U) = (X + U)(I + U^\top U)^{-1/2}`.

    The orthonormal matrix nearest to :math:`X + U`; second order on the Stiefel manifold and the
    projective retraction on the Grassmann manifold (Absil, Mahony & Sepulchre 2008, Sec. 4.1.1;
    Absil & Malick 2012). Computed through the eigendecomposition of the ``k x k`` Gram matrix
    :math:`G = (X + U)^\top (X + U)` (equal to :math:`I + U^\top U` for tangent ``U``, hence
    :math:`G \succeq I` and well conditioned): :math:`R_X(U) = (X + U) V \operatorname{diag}(
    \lambda^{-1/2}) V^\top`.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    u : torch.Tensor
        ``(..., n, k)`` tangent vector at ``x``.

    Returns
    -------
    torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    """
    y = x + u
    lam, vecs = torch.linalg.eigh(y.mT @ y)
    return y @ _sym_funcm(lam, vecs, torch.rsqrt)


def cayley_retraction(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Cayley retraction :math:`R_X(U) = (I - W/2)^{-1} (I + W/2) X` in :math:`O(n k^2)`.

    ``W`` is the skew-symmetric ``n x n`` matrix :math:`W = \hat U X^\top - X \hat U^\top` with
    :math:`\hat U = U - \tfrac12 X (X^\top U)`, which satisfies :math:`W X = U` for tangent ``U``
    (Li, Li & Todorovic, "Efficient Riemannian optimization on the Stiefel manifold via the
    Cayley transform", ICLR 2020). ``W`` has rank ``2k``: with :math:`A = [\hat U, X]`,
    :math:`B = [X, -\hat U]`, :math:`W = A B^\top`, and the Sherman-Morrison-Woodbury formula
    gives (Wen & Yin, "A feasible method for optimization with orthogonality constraints",
    Math. Program. 2013, Lemma 4(1))

    .. math::

        R_X(U) = X + A \left(I_{2k} - \tfrac12 B^\top A\right)^{-1} B^\top X .

    The Cayley transform of a skew matrix is orthogonal, so the result has orthonormal columns
    up to rounding for any step length.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    u : torch.Tensor
        ``(..., n, k)`` tangent vector at ``x`` (:math:`X^\top U` skew-symmetric).

    Returns
    -------
    torch.Tensor
        ``(..., n, k)`` point with orthonormal columns.
    """
    x, u = torch.broadcast_tensors(x, u)
    k = x.shape[-1]
    xtu = x.mT @ u
    uh = u - 0.5 * (x @ xtu)
    a = torch.cat((uh, x), dim=-1)
    b = torch.cat((x, -uh), dim=-1)
    bta = b.mT @ a
    eye = torch.eye(2 * k, dtype=x.dtype, device=x.device)
    btx = b.mT @ x
    return x + a @ torch.linalg.solve(eye - 0.5 * bta, btx)


_STIEFEL_RETRACTION_FUNCS = {
    "qr": qr_retraction,
    "polar": polar_retraction,
    "cayley": cayley_retraction,
}


class Stiefel(_Sampling, EuclideanStiefel):
    r"""Stiefel manifold (Euclidean metric) with a choice of retraction.

    Points are ``(..., n, k)`` tensors with :math:`X^\top X = I_k`; tangent vectors satisfy
    :math:`X^\top U + U^\top X = 0`; the metric is :math:`\langle U, V\rangle =
    \operatorname{tr}(U^\top V)`. The projection, vector transport by projection and the exact
    exponential map are :class:`geoopt.EuclideanStiefel`'s, so it works with
    :class:`geoopt.ManifoldParameter`, :class:`geoopt.optim.RiemannianSGD`,
    :class:`geoopt.optim.RiemannianAdam` and :class:`geoopt.optim.RiemannianLineSearch`. Added:
    the retraction choice, the checks of :class:`grassmann.Grassmann` (a tensor of another
    shape, dtype or device than the point is a ``ValueError`` / ``TypeError`` naming it),
    Haar-uniform :meth:`random` points and :meth:`dim`.

    Parameters
    ----------
    retraction : {"qr", "polar", "cayley", "expmap"}
        ``"qr"``: :func:`qr_retraction`; ``"polar"``: :func:`polar_retraction`; ``"cayley"``:
        :func:`cayley_retraction`; ``"expmap"``: geoopt's exact exponential map.
    """

    name = "Stiefel(euclidean)"

    def __new__(cls, *args: object, **kwargs: object) -> Stiefel:
        # geoopt's Stiefel.__new__ takes ``canonical``; bypass it.
        return Manifold.__new__(cls)

    def __init__(self, retraction: str = "qr") -> None:
        super().__init__()
        self.retraction = check_choice("retraction", retraction, STIEFEL_RETRACTIONS)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        r"""Tangent projection :math:`U - X \operatorname{sym}(X^\top U)` (geoopt's)."""
        _check_like(self, "x", x, u=u)
        return super().proju(x, u)

    egrad2rgrad = proju

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Vector transport by projection to the tangent space at ``y``."""
        _check_like(self, "y", y, x=x, v=v)
        return super().proju(y, v)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact exponential map of the Euclidean metric (geoopt's; ``u`` tangent at ``x``).

        Leading dimensions broadcast (geoopt's map concatenates ``x`` and ``u``, which needs
        equal shapes).
        """
        _check_like(self, "x", x, u=u)
        return super().expmap(*torch.broadcast_tensors(x, u))

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Retract ``u`` at ``x`` with the retraction chosen at construction."""
        _check_like(self, "x", x, u=u)
        if self.retraction == "expmap":
            # geoopt's exact map needs a tangent u; the first momentum step is not one
            return super().expmap(*torch.broadcast_tensors(x, super().proju(x, u)))
        return _STIEFEL_RETRACTION_FUNCS[self.retraction](x, u)

    def retr_transp(
        self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Retract ``u`` at ``x`` and transport ``v`` there by projection."""
        _check_like(self, "x", x, v=v)
        y = self.retr(x, u)
        return y, super().proju(y, v)

    def _point_dim(self, n: int, k: int) -> int:
        r""":math:`\dim \mathrm{St}(n, k) = n k - k(k+1)/2`: the tangent space
        :math:`\{U : X^\top U + U^\top X = 0\}` loses the ``k(k+1)/2`` entries of a symmetric
        matrix."""
        return n * k - k * (k + 1) // 2

    def extra_repr(self) -> str:
        return f"retraction={self.retraction!r}"
