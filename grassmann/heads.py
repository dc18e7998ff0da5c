r"""Classification heads built on fixed class vectors and on trainable class subspaces.

Three heads replace the trainable ``nn.Linear`` at the end of a classifier. Each one
normalises the feature, ``x_hat = x / max(||x||, eps)``, and returns scaled similarities:

* :class:`EBVHead` -- cosine logits against fixed unit class vectors ``w_i`` (Equiangular
  Basis Vectors, Shen et al., CVPR 2023): ``logit_i = scale * <x_hat, w_i>``.
* :class:`FixedClassifierHead` -- the same with fixed random Gaussian vectors (Shalev et al.,
  2020) or the simplex equiangular tight frame of neural collapse (Papyan et al., 2020).
* :class:`GrassmannHead` -- one ``k``-dimensional subspace per class (Grassmann Class
  Representation, Wang, Li and Zhang, ICCV 2023): ``logit_i = scale * ||S_i^T x_hat||`` where
  ``S_i`` (``n x k``, orthonormal columns) is a point on the Grassmann manifold ``Gr(n, k)``,
  trained with :class:`geoopt.optim.RiemannianSGD` or :class:`geoopt.optim.RiemannianAdam`.

The class vectors and subspaces can come from ``.npy`` files (written by ``ebv-gen``); they are
read with :func:`grassmann.npyio.load_vectors` and :func:`grassmann.npyio.load_bases`, which
never unpickle and validate the content.
"""

from __future__ import annotations

import os
from typing import Any

import geoopt
import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_choice, check_finite, check_float, check_int, check_tensor
from .manifold import Grassmann
from .stiefel import orthonormalize

__all__ = [
    "EBVHead",
    "FixedClassifierHead",
    "GrassmannHead",
    "reorthonormalize_",
]

#: Default logit scale of the cosine heads. A cosine logit lies in ``[-1, 1]``; with a scale of
#: 16 the softmax can still put ~``1 - (C - 1) e^{-16}`` of its mass on one class, and the
#: gradient does not vanish early (the EBV paper uses a temperature of 0.07, a scale of ~14).
DEFAULT_COSINE_SCALE = 16.0

#: ``eps`` of the feature normalisation ``x / max(||x||, eps)``.
_NORM_EPS = 1e-12

#: Added to ``||S_i^T x_hat||^2`` under the square root so that its gradient is defined at 0.
_SQRT_EPS = 1e-12

#: Tolerance on ``S^T S = I`` for class subspaces given as tensors (the same as the ``.npy``
#: loaders use).
_ORTHONORMAL_TOL = 1e-4


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _check_features(x: torch.Tensor, expected: int) -> None:
    """Shape check of the forward input (no host synchronisation)."""
    check_tensor("input", x, min_ndim=1)
    if x.shape[-1] != expected:
        raise ValueError(
            f"input must have {expected} features in its last dimension, got shape "
            f"{tuple(x.shape)} ({x.shape[-1]} features)"
        )


def _normalize_features(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1, eps=_NORM_EPS)


def _load_vectors(vectors: Any) -> torch.Tensor:
    """Return the class vectors as a float64 ``(N, d)`` tensor with unit rows."""
    if _is_path(vectors):
        from . import npyio

        vectors = npyio.load_vectors(vectors)
    check_tensor("vectors", vectors, ndim=2)
    if vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise ValueError(f"vectors must be a non-empty (N, d) tensor, got {tuple(vectors.shape)}")
    vectors = vectors.detach().to(torch.float64)
    check_finite("vectors", vectors)
    norms = vectors.norm(dim=1)
    if bool((norms == 0).any()):
        raise ValueError(
            f"vectors must have non-zero rows, got {int((norms == 0).sum())} zero rows"
        )
    return vectors / norms[:, None]


def _simplex_frame(num_classes: int, dim: int) -> torch.Tensor:
    """``num_classes`` unit vectors in ``R^dim`` with pairwise cosine ``-1 / (num_classes - 1)``.

    The regular simplex of :func:`grassmann.constructions.simplex` (``m + 1`` vectors in
    ``R^m`` with ``m = num_classes - 1``) padded with zeros to ``R^dim``.
    """
    from .constructions import simplex

    frame = simplex(num_classes - 1, dtype=torch.float64)
    out = torch.zeros(num_classes, dim, dtype=torch.float64)
    out[:, : num_classes - 1] = frame
    return out


def _orthonormality_error(bases: torch.Tensor) -> float:
    """``max |S^T S - I|`` over the batch, in float64."""
    b = bases.to(torch.float64)
    gram = b.transpose(-1, -2) @ b
    eye = torch.eye(b.shape[-1], dtype=torch.float64, device=b.device)
    return float((gram - eye).abs().amax()) if b.numel() else 0.0


# --------------------------------------------------------------------------------------------
# vector heads
# --------------------------------------------------------------------------------------------


class EBVHead(nn.Module):
    r"""Cosine logits against fixed class vectors (Equiangular Basis Vectors).

    .. math::

        \mathrm{logit}_i(x) = s \, \frac{\langle A x + b, w_i \rangle}{\max(\|A x + b\|, \epsilon)}

    where the rows ``w_i`` of ``vectors`` are normalised to unit length and stored as a buffer
    (saved in the ``state_dict``, moved by ``.to()``, never trained). With
    ``in_features=None`` the optional learned map ``x -> A x + b`` is the identity and the
    input must already have ``d`` features.

    Parameters
    ----------
    vectors
        Class vectors, a tensor of shape ``(N, d)`` (any scale: rows are normalised), or the
        path of a ``.npy`` file read with :func:`grassmann.npyio.load_vectors` (no pickles,
        finite, unit rows).
    in_features
        If given, a learned ``nn.Linear(in_features, d)`` maps the input features to ``R^d``
        first.
    scale
        The logit scale ``s`` (inverse temperature), a fixed float. The default, 16, lets the
        softmax reach a confident prediction from cosines in ``[-1, 1]``; the EBV paper's
        temperature 0.07 corresponds to ``s ~ 14.3``.
    device, dtype
        Where and in which floating dtype to store the vectors and the linear map (as for
        ``torch.nn`` layers; default: the CPU and ``torch.get_default_dtype()``).

    References
    ----------
    Y. Shen, X. Sun, X.-S. Wei, "Equiangular Basis Vectors", CVPR 2023.

    Examples
    --------
    >>> head = EBVHead(torch.eye(3), in_features=5)
    >>> head(torch.randn(4, 5)).shape
    torch.Size([4, 3])
    """

    vectors: torch.Tensor

    def __init__(
        self,
        vectors: torch.Tensor | str | os.PathLike,
        in_features: int | None = None,
        scale: float = DEFAULT_COSINE_SCALE,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        unit = _load_vectors(vectors)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.num_classes, self.dim = int(unit.shape[0]), int(unit.shape[1])
        self.scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        if in_features is not None:
            in_features = check_int("in_features", in_features, minimum=1)
            self.linear: nn.Linear | None = nn.Linear(
                in_features, self.dim, device=device, dtype=dtype
            )
        else:
            self.linear = None
        self.in_features = in_features if in_features is not None else self.dim
        self.register_buffer("vectors", unit.to(device=device, dtype=dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``input.shape[:-1] + (num_classes,)``."""
        _check_features(input, self.in_features)
        x = self.linear(input) if self.linear is not None else input
        x = _normalize_features(x)
        return self.scale * (x @ self.vectors.to(x.dtype).T)

    def extra_repr(self) -> str:
        mapped = f"in_features={self.in_features}, " if self.linear is not None else ""
        return f"{mapped}num_classes={self.num_classes}, dim={self.dim}, scale={self.scale:g}"


class FixedClassifierHead(EBVHead):
    r"""Cosine logits against fixed random or simplex class vectors.

    * ``kind="random"``: ``w_i = g_i / ||g_i||`` with ``g_i ~ N(0, I_d)`` drawn once from a
      generator seeded with ``seed`` (Shalev et al., 2020). For ``d`` much larger than the
      number of classes the vectors are nearly orthogonal, ``|cos| ~ 1 / sqrt(d)``.
    * ``kind="simplex"``: the simplex equiangular tight frame of neural collapse (Papyan et
      al., 2020): ``C`` unit vectors with pairwise cosine ``-1 / (C - 1)``, the largest
      possible minimum angle; needs ``C <= d + 1``. They span the first ``C - 1`` coordinates
      (the regular simplex of :func:`grassmann.constructions.simplex`, padded with zeros).

    The logits are those of :class:`EBVHead`: ``scale * cos(x, w_i)``.

    Parameters
    ----------
    num_classes
        Number of classes ``C`` (>= 2 for ``"simplex"``).
    dim
        Dimension ``d`` of the class vectors (the feature width, or the output width of the
        learned map when ``in_features`` is given).
    kind
        ``"random"`` or ``"simplex"``.
    scale
        Logit scale, as in :class:`EBVHead`.
    seed
        Seed of the random vectors (``kind="random"``); the same seed gives the same vectors on
        every machine (they are drawn on the CPU in float64).
    in_features
        Optional learned ``nn.Linear(in_features, dim)`` in front, as in :class:`EBVHead`.

    References
    ----------
    G. Shalev, G.-L. Shalev, J. Keshet, "Redesigning the classification layer by randomizing
    the class representation vectors", arXiv:2011.08704, 2020.
    V. Papyan, X. Y. Han, D. L. Donoho, "Prevalence of neural collapse during the terminal
    phase of deep learning training", PNAS 117 (40), 2020.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        kind: str = "random",
        scale: float = DEFAULT_COSINE_SCALE,
        seed: int = 0,
        *,
        in_features: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, minimum=1)
        dim = check_int("dim", dim, minimum=1)
        kind = check_choice("kind", kind, ("random", "simplex"))
        seed = check_int("seed", seed, minimum=0)
        if kind == "random":
            generator = torch.Generator().manual_seed(seed)
            vectors = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)
        else:
            if num_classes < 2 or num_classes > dim + 1:
                raise ValueError(
                    f"kind='simplex' needs 2 <= num_classes <= dim + 1, got num_classes="
                    f"{num_classes} with dim={dim} (a simplex frame of C vectors spans C - 1 "
                    f"dimensions); use kind='random' or EBV vectors for more classes"
                )
            vectors = _simplex_frame(num_classes, dim)
        super().__init__(vectors, in_features=in_features, scale=scale, device=device, dtype=dtype)
        self.kind = kind
        self.seed = seed

    def extra_repr(self) -> str:
        seed = f", seed={self.seed}" if self.kind == "random" else ""
        return f"{super().extra_repr()}, kind={self.kind!r}{seed}"


# --------------------------------------------------------------------------------------------
# subspace head
# --------------------------------------------------------------------------------------------


class GrassmannHead(nn.Module):
    r"""Grassmann Class Representation: one trainable ``k``-dimensional subspace per class.

    .. math::

        \mathrm{logit}_i(x) = s \, \sqrt{\|S_i^\top \hat x\|^2 + \epsilon},
        \qquad \hat x = \frac{x}{\max(\|x\|, 10^{-12})},

    where ``S_i`` (``n x k``, ``S_i^T S_i = I_k``) is an orthonormal basis of the class
    subspace, a point of the Grassmann manifold ``Gr(n, k)``, and ``epsilon = 1e-12`` makes the
    gradient defined where ``S_i^T x_hat = 0``. The logit is ``s`` times the cosine of the
    angle between the feature and the subspace; for ``k = 1`` it is ``s |cos(x, s_i)|``. All
    classes share one matrix product: ``S`` is laid out as ``(n, C k)`` and ``x_hat @ S`` has
    shape ``(B, C k)``, then the norm runs over each group of ``k``. Under
    :func:`torch.autocast` the product may run in the lower precision; the norm is always taken
    in float32 (or float64 for float64 inputs).

    ``subspaces`` is a :class:`geoopt.ManifoldParameter` on :class:`grassmann.Grassmann` of
    shape ``(num_classes, in_features, subspace_dim)``. Train it with
    :class:`geoopt.optim.RiemannianSGD` or :class:`geoopt.optim.RiemannianAdam`: they project
    the Euclidean gradient to the horizontal space, ``G - S (S^T G)``, and step with the
    manifold's retraction, which keeps the bases orthonormal. Put the subspaces in a parameter
    group with ``weight_decay=0``: weight decay adds ``lambda S`` to the gradient, which the
    projection removes (``S - S S^T S = 0``), so it only costs time and misleads readers of
    the configuration. :func:`reorthonormalize_` (or the optimisers'
    ``stabilize=`` argument) re-orthonormalises if a retraction lets rounding errors accumulate.

    Parameters
    ----------
    in_features
        Feature width ``n``.
    num_classes
        Number of classes ``C``.
    subspace_dim
        Dimension ``k`` of each class subspace, ``1 <= k <= n``.
    scale
        Logit scale ``s`` (the GCR paper uses 25 on ImageNet).
    init
        ``"random"``: independent uniform (Haar) random subspaces from
        :meth:`grassmann.Grassmann.random`; ``seed`` makes them reproducible, otherwise they are
        drawn from torch's global generator (like ``nn.Linear``'s initialisation, so
        ``torch.manual_seed`` applies). A tensor of shape ``(num_classes, in_features,
        subspace_dim)`` with orthonormal columns (within 1e-4) -- e.g. a subspace packing --
        is copied as is. A path (``str`` or ``os.PathLike``) is read with
        :func:`grassmann.npyio.load_bases`.
    trainable
        ``False`` keeps the subspaces fixed: they are then a buffer (in the ``state_dict``,
        moved by ``.to()``, invisible to ``parameters()`` and thus to every optimiser) -- the
        subspace analogue of :class:`EBVHead`.
    seed
        Seed of ``init="random"``; ``None`` uses torch's global generator.
    retraction
        Retraction of the :class:`grassmann.Grassmann` manifold the optimisers step with:
        ``"qr"`` (default: the Q factor of ``S + U`` by one Cholesky-QR pass, with a second
        pass only for the classes whose condition estimate asks for it), ``"polar"`` or
        ``"expmap"`` (the exact geodesic step of the GCR paper). All return orthonormal bases
        after every step.
    device, dtype
        Where and in which floating dtype to store the subspaces. Each basis is stored
        column-major (strides ``(n k, 1, n)``) so that the forward pass needs no copy.

    References
    ----------
    H. Wang, Z. Li, W. Zhang, "Grassmann Class Representation in Deep Learning", ICCV 2023
    (GCR).

    Examples
    --------
    >>> head = GrassmannHead(16, 10, 4, seed=0)
    >>> head(torch.randn(8, 16)).shape
    torch.Size([8, 10])
    """

    subspaces: torch.Tensor

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        subspace_dim: int,
        scale: float = 25.0,
        init: str | os.PathLike | torch.Tensor = "random",
        trainable: bool = True,
        *,
        seed: int | None = None,
        retraction: str = "qr",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.subspace_dim = check_int(
            "subspace_dim", subspace_dim, minimum=1, maximum=self.in_features
        )
        self.scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        if not isinstance(trainable, bool):
            raise TypeError(f"trainable must be a bool, got {type(trainable).__name__}")
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.trainable = trainable
        manifold = Grassmann(retraction=retraction)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        bases = self._initial_bases(init, seed, manifold)
        # Store every basis column-major (strides (n k, 1, n)): then the (n, C k) layout of
        # the forward pass is a view, the same memory layout as nn.Linear's weight transposed,
        # and no (C, n, k) copy is made in the forward or the backward pass.
        bases = bases.to(device=device, dtype=dtype).mT.contiguous().mT
        if trainable:
            self.subspaces = geoopt.ManifoldParameter(bases, manifold=manifold)
        else:
            self.register_buffer("subspaces", bases)
        self.retraction = manifold.retraction
        if isinstance(init, str) and init == "random":
            self.init = "random"
        else:
            self.init = "path" if _is_path(init) else "tensor"

    @property
    def expected_shape(self) -> tuple[int, int, int]:
        """``(num_classes, in_features, subspace_dim)``."""
        return (self.num_classes, self.in_features, self.subspace_dim)

    def _initial_bases(self, init: Any, seed: int | None, manifold: Grassmann) -> torch.Tensor:
        shape = self.expected_shape
        if isinstance(init, str) and init == "random":
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            bases = manifold.random(*shape, dtype=torch.float64, generator=generator)
            return bases.detach().as_subclass(torch.Tensor)
        if _is_path(init):
            if not str(init).endswith(".npy") and not os.path.exists(init):
                raise ValueError(
                    f"init must be 'random', a tensor of shape {shape} or the path of a .npy "
                    f"file, got {init!r}"
                )
            from . import npyio

            bases = npyio.load_bases(init)
            source = f"init (loaded from {os.fspath(init)!r})"
        elif isinstance(init, torch.Tensor):
            bases = check_tensor("init", init, ndim=3).detach()
            source = "init"
            check_finite("init", bases)
        else:
            raise TypeError(
                f"init must be 'random', a torch.Tensor or a path, got {type(init).__name__}"
            )
        if tuple(bases.shape) != shape:
            raise ValueError(
                f"{source} must have shape (num_classes, in_features, subspace_dim) = {shape}, "
                f"got {tuple(bases.shape)}"
            )
        error = _orthonormality_error(bases)
        if error > _ORTHONORMAL_TOL:
            raise ValueError(
                f"{source} must have orthonormal columns (max |S^T S - I| <= "
                f"{_ORTHONORMAL_TOL:g}), got max |S^T S - I| = {error:.3g}"
            )
        return bases.to(device="cpu", dtype=torch.float64).clone()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``input.shape[:-1] + (num_classes,)``."""
        _check_features(input, self.in_features)
        c, n, k = self.expected_shape
        x = _normalize_features(input)
        # (C, n, k) -> (n, C k): one matrix product for all classes.
        flat = self.subspaces.permute(1, 0, 2).reshape(n, c * k)
        proj = x @ flat.to(x.dtype)
        proj = proj.view(*proj.shape[:-1], c, k)
        # The norm in at least float32, whatever precision the product ran in. vector_norm is
        # one pass over (B, C, k) forward and backward; its gradient at 0 is defined (0), and
        # sqrt(r^2 + eps) has the gradient p / sqrt(||p||^2 + eps) of the textbook formula.
        r = torch.linalg.vector_norm(
            proj, dim=-1, dtype=torch.promote_types(proj.dtype, torch.float32)
        )
        return self.scale * torch.sqrt(r.square() + _SQRT_EPS)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"subspace_dim={self.subspace_dim}, scale={self.scale:g}, init={self.init!r}, "
            f"trainable={self.trainable}, retraction={self.retraction!r}"
        )


@torch.no_grad()
def reorthonormalize_(module: nn.Module) -> nn.Module:
    """Re-orthonormalise, in place, the subspaces of every :class:`GrassmannHead` in ``module``.

    Each basis ``S_i`` is replaced by the ``Q`` factor of its QR decomposition (signs fixed so
    that ``diag(R) > 0``), which spans the same subspace; the logits change only by the
    rounding error that is removed. Measured with float32 and momentum 0.9: the default QR
    retraction keeps ``max |S^T S - I|`` near ``2e-7`` over 1000 steps by itself, whereas the
    exponential map (``retraction="expmap"``) lets rounding errors accumulate (about ``1e-4``
    after 1000 steps): call this every few hundred steps then, or pass ``stabilize=100`` to the
    geoopt optimiser, which does the same with the polar factor. Optimiser state (momentum) is
    left alone: it stays a valid tangent direction to first order.

    Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for sub in module.modules():
        if isinstance(sub, GrassmannHead):
            sub.subspaces.copy_(orthonormalize(sub.subspaces, method="qr"))
    return module
