r"""Classification heads built on fixed class vectors and on trainable class subspaces.

Three heads replace the trainable ``nn.Linear`` at the end of a classifier. Each one
normalises the feature, ``x_hat = x / max(||x||, eps)``, and returns scaled similarities:

* :class:`EBVHead` -- cosine logits against fixed unit class vectors ``w_i`` (Equiangular
  Basis Vectors, Shen et al., CVPR 2023): ``logit_i = scale * <x_hat, w_i>``.
* :class:`FixedClassifierHead` -- the same with fixed random Gaussian vectors (Shalev et al.,
  2020) or the simplex equiangular tight frame of neural collapse (Papyan et al., 2020).
* :class:`GrassmannHead` -- one ``k``-dimensional subspace per class (Grassmann Class
  Representation, Wang, Li and Zhang, ICCV 2023): ``logit_i = scale * ||S_i^T x_hat||`` where
  ``S_i`` (``n x k_i``, orthonormal columns) is a point on the Grassmann manifold
  ``Gr(n, k_i)``, trained with :class:`grassmann.optim.GCRSGD` (the paper's exact update),
  :class:`geoopt.optim.RiemannianSGD` or :class:`geoopt.optim.RiemannianAdam`.

The class vectors and subspaces can come from ``.npy`` files (written by ``ebv-gen``); they are
read with :func:`grassmann.npyio.load_vectors` and :func:`grassmann.npyio.load_bases`, which
never unpickle and validate the content.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
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

#: Default logit scale of the cosine heads: ``1 / 0.07 ~ 14.29``, the temperature ``tau = 0.07``
#: of the EBV paper (logits ``<x_hat, w_i> / tau``). A cosine logit lies in ``[-1, 1]``; with
#: this scale the softmax can still put ~``1 - (C - 1) e^{-28.6}`` of its mass on one class.
DEFAULT_COSINE_SCALE = 1.0 / 0.07

#: ``eps`` of the feature normalisation ``x / max(||x||, eps)``.
_NORM_EPS = 1e-12

#: Added to ``||S_i^T x_hat||^2`` under the square root so that its gradient is defined at 0.
_SQRT_EPS = 1e-12

#: Tolerance on ``S^T S = I`` for class subspaces given as tensors (the same as the ``.npy``
#: loaders use).
_ORTHONORMAL_TOL = 1e-4

#: Tolerance on ``S^T S = I`` of the subspaces of a head in training and of a loaded
#: ``state_dict``: far above the rounding error of any Riemannian optimiser (float32 steps stay
#: below ~1e-5 between re-orthonormalisations), far below what one Euclidean step makes.
_DRIFT_TOL = 1e-3

#: The forward pass in training mode checks the orthonormality of at most this many classes per
#: dimension group, at calls 1, 2, 4, ..., _CHECK_EVERY and then every _CHECK_EVERY calls.
_CHECK_CLASSES = 16
_CHECK_EVERY = 1024


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
        The logit scale ``s`` (inverse temperature), a fixed float. The default is the EBV
        paper's: ``1 / 0.07 ~ 14.29`` (temperature 0.07; the paper trains with label smoothing
        0.1, ``F.cross_entropy(logits, y, label_smoothing=0.1)``). It used to be 16 (see
        the changelog).
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


class _ScaledProjectionNorm(torch.autograd.Function):
    r"""``s sqrt(||p||^2 + eps)`` over the last dimension, with a one-pass backward.

    Forward: one reduction over ``(..., C, k)`` (in float32 at least). Backward:
    :math:`\partial / \partial p = s\, p / \sqrt{\|p\|^2 + \epsilon} = s^2 p / \mathrm{out}`,
    one elementwise pass over ``p`` (autograd's ``vector_norm`` backward makes five, with the
    masking of zero norms that ``eps`` makes unnecessary). The backward is written with
    differentiable operations on the saved input and output, so double backward works.
    """

    @staticmethod
    def forward(ctx: Any, proj: torch.Tensor, scale: float) -> torch.Tensor:
        wide = torch.promote_types(proj.dtype, torch.float32)
        r = torch.linalg.vector_norm(proj, dim=-1, dtype=wide)
        out = r.square_().add_(_SQRT_EPS).sqrt_().mul_(scale)
        ctx.save_for_backward(proj, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        proj, out = ctx.saved_tensors
        weight = grad * (ctx.scale * ctx.scale) / out
        return proj * weight.unsqueeze(-1).to(proj.dtype), None


def _check_subspace_dims(value: Any, num_classes: int, in_features: int) -> tuple[int, ...]:
    """``subspace_dim`` (an int, or one int per class) as a tuple of ``num_classes`` ints."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != num_classes:
            raise ValueError(
                f"subspace_dim must be an int or a sequence of num_classes = {num_classes} "
                f"ints, got a sequence of length {len(value)}"
            )
        return tuple(
            check_int(f"subspace_dim[{i}]", k, minimum=1, maximum=in_features)
            for i, k in enumerate(value)
        )
    k = check_int("subspace_dim", value, minimum=1, maximum=in_features)
    return (k,) * num_classes


def _orthonormal_tol(dtype: torch.dtype) -> float:
    """Largest ``max |S^T S - I|`` that a trained head may show before it counts as off the
    manifold: ``1e-3``, or 64 ulps for the half-precision types."""
    return max(_DRIFT_TOL, 64.0 * torch.finfo(dtype).eps)


def _worst_basis(bases: torch.Tensor) -> tuple[float, int]:
    """``(max |S_i^T S_i - I|, i)`` over a ``(C, n, k)`` stack (float64; NaN counts as worst)."""
    b = bases.detach().to(torch.float64)
    eye = torch.eye(b.shape[-1], dtype=torch.float64, device=b.device)
    err = (b.mT @ b - eye).abs().amax(dim=(-2, -1))
    err = torch.where(torch.isfinite(err), err, torch.inf)
    worst = int(err.argmax())
    return float(err[worst]), worst


def _is_compiling() -> bool:
    """Whether torch.compile is tracing (the check would break the graph); torch < 2.3 has no
    ``torch.compiler.is_compiling``."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


_OFF_MANIFOLD_ADVICE = (
    "train the subspaces with grassmann.optim.GCRSGD, geoopt.optim.RiemannianSGD or "
    "RiemannianAdam (a Euclidean optimiser such as torch.optim.SGD or AdamW moves them off the "
    "Grassmann manifold; grassmann.optim.param_groups keeps them out of its groups), or "
    "re-orthonormalise them with grassmann.reorthonormalize_(model)"
)


class GrassmannHead(nn.Module):
    r"""Grassmann Class Representation: one trainable subspace per class.

    .. math::

        \mathrm{logit}_i(x) = s \, \sqrt{\|S_i^\top \hat x\|^2 + \epsilon},
        \qquad \hat x = \frac{x}{\max(\|x\|, 10^{-12})},

    where ``S_i`` (``n x k_i``, ``S_i^T S_i = I``) is an orthonormal basis of the class
    subspace, a point of the Grassmann manifold ``Gr(n, k_i)``, and ``epsilon = 1e-12`` makes
    the gradient defined where ``S_i^T x_hat = 0``. The logit is ``s`` times the cosine of the
    angle between the feature and the subspace; for ``k_i = 1`` it is ``s |cos(x, s_i)|``. All
    classes of one dimension share one matrix product: their bases are laid out as an
    ``(n, C k)`` matrix (a view) and ``x_hat @ S`` has shape ``(B, C k)``, then the norm runs
    over each group of ``k``. Under :func:`torch.autocast` the product may run in the lower
    precision; the norm is always taken in float32 (or float64 for float64 inputs).

    **Subspaces.** With one dimension ``k`` for all classes, ``subspaces`` is a
    :class:`geoopt.ManifoldParameter` on :class:`grassmann.Grassmann` of shape
    ``(num_classes, in_features, k)``. With a dimension per class
    (``subspace_dim=[k_1, ..., k_C]``) the classes of each distinct dimension ``k`` share one
    parameter ``subspaces_k{k}`` of shape ``(C_k, in_features, k)`` (classes in increasing
    order); the forward pass makes one product per distinct dimension (never a loop over the
    classes) and puts the logits back in class order. :meth:`class_bases` returns the basis of
    every class either way.

    **Training.** Train the subspaces with a Riemannian optimiser: :class:`grassmann.optim.
    GCRSGD` (the exact update of the GCR paper), or :class:`geoopt.optim.RiemannianSGD` /
    :class:`geoopt.optim.RiemannianAdam`. They project the Euclidean gradient to the horizontal
    space, ``G - S (S^T G)``, and step along a geodesic or a retraction, which keeps the bases
    orthonormal. **A Euclidean optimiser (torch.optim.SGD, Adam, AdamW ...) silently moves the
    bases off the manifold** (their columns stop being orthonormal and the logits stop being
    cosines): in training mode the forward pass checks the orthonormality of a few classes at
    calls 1, 2, 4, 8, ... and then every 1024 calls (one host synchronisation each time) and
    warns once (``RuntimeWarning``) when ``max |S^T S - I|`` exceeds ``1e-3``.
    :func:`grassmann.optim.param_groups` keeps the subspaces in a group of their own without
    weight decay. :meth:`load_state_dict` refuses subspaces that are not orthonormal to the
    same tolerance (the subspaces of the head are then left as they were).

    Parameters
    ----------
    in_features
        Feature width ``n``.
    num_classes
        Number of classes ``C``.
    subspace_dim
        Dimension ``k`` of every class subspace, ``1 <= k <= n``, or a sequence of ``C``
        dimensions, one per class.
    scale
        Logit scale ``s`` (the GCR paper uses 25 on ImageNet).
    init
        ``"random"``: independent uniform (Haar) random subspaces from
        :meth:`grassmann.Grassmann.random`; ``seed`` makes them reproducible, otherwise they are
        drawn from torch's global generator (like ``nn.Linear``'s initialisation, so
        ``torch.manual_seed`` applies).

        A tensor of shape ``(num_classes, in_features, K)`` with orthonormal columns (within
        1e-4), e.g. a subspace packing from :func:`ebv_gen.generate_subspaces`, with
        ``K = k`` (one dimension) or ``K = max(k_i)`` (a dimension per class: class ``i``
        takes the first ``k_i`` columns of its basis, a subspace of the packing's subspace, so
        the smallest principal angle between any two classes is at least the packing's).
        A path (``str`` or ``os.PathLike``) of such a ``.npy`` file is read with
        :func:`grassmann.npyio.load_bases`. A sequence of ``num_classes`` tensors of shapes
        ``(in_features, k_i)`` gives every class its basis.
    trainable
        ``False`` keeps the subspaces fixed: they are then buffers (in the ``state_dict``,
        moved by ``.to()``, invisible to ``parameters()`` and thus to every optimiser) -- the
        subspace analogue of :class:`EBVHead`.
    seed
        Seed of ``init="random"``; ``None`` uses torch's global generator.
    retraction
        Retraction of the :class:`grassmann.Grassmann` manifold that geoopt's optimisers step
        with: ``"qr"`` (default: the Q factor of ``S + U`` by one Cholesky-QR pass, with a second
        pass only for the classes whose condition estimate asks for it), ``"polar"`` or
        ``"expmap"`` (the exact geodesic step of the GCR paper). :class:`grassmann.optim.GCRSGD`
        always steps along the exact geodesic.
    device
        Where to store the subspaces (default: the CPU).
    dtype
        Floating dtype of the subspaces (default: ``torch.get_default_dtype()``). Each basis is
        stored column-major (strides ``(n k, 1, n)``) so that the forward pass needs no copy.

    References
    ----------
    H. Wang, Z. Li, W. Zhang, "Grassmann Class Representation in Deep Learning", ICCV 2023
    (GCR).

    Examples
    --------
    >>> head = GrassmannHead(16, 10, 4, seed=0)
    >>> head(torch.randn(8, 16)).shape
    torch.Size([8, 10])
    >>> mixed = GrassmannHead(16, 3, [2, 4, 2], seed=0)
    >>> [tuple(b.shape) for b in mixed.class_bases()]
    [(16, 2), (16, 4), (16, 2)]
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        subspace_dim: int | Sequence[int],
        scale: float = 25.0,
        init: str | os.PathLike | torch.Tensor | Sequence[torch.Tensor] = "random",
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
        dims = _check_subspace_dims(subspace_dim, self.num_classes, self.in_features)
        #: The dimension of every class subspace, ``(k_1, ..., k_C)``.
        self.subspace_dims: tuple[int, ...] = dims
        uniform = len(set(dims)) == 1
        #: ``k`` when all classes have one dimension, else the tuple of :attr:`subspace_dims`.
        self.subspace_dim: int | tuple[int, ...] = dims[0] if uniform else dims
        self.scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        if not isinstance(trainable, bool):
            raise TypeError(f"trainable must be a bool, got {type(trainable).__name__}")
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        self.trainable = trainable
        manifold = Grassmann(retraction=retraction)
        dtype = dtype if dtype is not None else torch.get_default_dtype()

        # classes grouped by dimension (increasing), each group one (C_k, n, k) tensor
        group_dims = sorted(set(dims))
        members = [[i for i, d in enumerate(dims) if d == k] for k in group_dims]
        names = ["subspaces"] if uniform else [f"subspaces_k{k}" for k in group_dims]
        self._groups: tuple[tuple[str, int, tuple[int, ...]], ...] = tuple(
            (name, k, tuple(m)) for name, k, m in zip(names, group_dims, members, strict=True)
        )
        bases = self._initial_bases(init, seed, manifold)
        for (name, _, _), b in zip(self._groups, bases, strict=True):
            # Column-major storage (strides (n k, 1, n)): the (n, C k) layout of the forward
            # pass is then a view, the memory layout of nn.Linear's weight transposed, and no
            # (C, n, k) copy is made in the forward or the backward pass.
            b = b.to(device=device, dtype=dtype).mT.contiguous().mT
            if trainable:
                self.register_parameter(name, geoopt.ManifoldParameter(b, manifold=manifold))
            else:
                self.register_buffer(name, b)
        self._class_order: torch.Tensor | None
        inverse = self._inverse_order()
        if inverse is None:
            self._class_order = None
        else:
            self.register_buffer("_class_order", inverse.to(device), persistent=False)
        self.retraction = manifold.retraction
        if isinstance(init, str) and init == "random":
            self.init = "random"
        elif _is_path(init):
            self.init = "path"
        else:
            self.init = "bases" if isinstance(init, (list, tuple)) else "tensor"
        self._forward_calls = 0
        self._next_check = 1
        self._warned_off_manifold = False

    # -- construction ---------------------------------------------------------------------

    def _inverse_order(self) -> torch.Tensor | None:
        """The permutation that puts the logits (grouped by dimension) back in class order, on
        the CPU; ``None`` when the groups are already in class order."""
        order = [i for _, _, m in self._groups for i in m]
        if order == sorted(order):
            return None
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return inverse

    @property
    def expected_shape(self) -> tuple[int, int, int]:
        """Shape of an ``init`` tensor: ``(num_classes, in_features, max(k_i))``."""
        return (self.num_classes, self.in_features, max(self.subspace_dims))

    def _initial_bases(
        self, init: Any, seed: int | None, manifold: Grassmann
    ) -> list[torch.Tensor]:
        """The float64 CPU bases of every dimension group, from ``init``."""
        n = self.in_features
        if isinstance(init, str) and init == "random":
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            return [
                manifold.random(len(m), n, k, dtype=torch.float64, generator=generator)
                .detach()
                .as_subclass(torch.Tensor)
                for _, k, m in self._groups
            ]
        if isinstance(init, (list, tuple)):
            return self._bases_from_sequence(init)
        if _is_path(init):
            if not str(init).endswith(".npy") and not os.path.exists(init):
                raise ValueError(
                    f"init must be 'random', a tensor of shape {self.expected_shape}, a sequence "
                    f"of bases or the path of a .npy file, got {init!r}"
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
                f"init must be 'random', a torch.Tensor, a sequence of tensors or a path, got "
                f"{type(init).__name__}"
            )
        shape = self.expected_shape
        if tuple(bases.shape) != shape:
            what = "subspace_dim" if len(self._groups) == 1 else "max(subspace_dim)"
            raise ValueError(
                f"{source} must have shape (num_classes, in_features, {what}) = {shape}, "
                f"got {tuple(bases.shape)}"
            )
        bases = bases.to(device="cpu", dtype=torch.float64)
        groups = [bases[list(m), :, :k].clone() for _, k, m in self._groups]
        for (_, k, m), b in zip(self._groups, groups, strict=True):
            error, worst = _worst_basis(b)
            if error > _ORTHONORMAL_TOL:
                cols = f"first {k} columns" if k < shape[2] else "columns"
                raise ValueError(
                    f"{source} must have orthonormal {cols} (max |S^T S - I| <= "
                    f"{_ORTHONORMAL_TOL:g}), got max |S^T S - I| = {error:.3g} (class {m[worst]})"
                )
        return groups

    def _bases_from_sequence(self, init: Sequence[Any]) -> list[torch.Tensor]:
        n, dims = self.in_features, self.subspace_dims
        if len(init) != self.num_classes:
            raise ValueError(
                f"init as a sequence must hold num_classes = {self.num_classes} bases, got "
                f"{len(init)}"
            )
        per_class = []
        for i, b in enumerate(init):
            b = check_tensor(f"init[{i}]", b, ndim=2).detach()
            if tuple(b.shape) != (n, dims[i]):
                raise ValueError(
                    f"init[{i}] must have shape (in_features, subspace_dim[{i}]) = "
                    f"{(n, dims[i])}, got {tuple(b.shape)}"
                )
            check_finite(f"init[{i}]", b)
            b = b.to(device="cpu", dtype=torch.float64)
            error, _ = _worst_basis(b[None])
            if error > _ORTHONORMAL_TOL:
                raise ValueError(
                    f"init[{i}] must have orthonormal columns (max |S^T S - I| <= "
                    f"{_ORTHONORMAL_TOL:g}), got max |S^T S - I| = {error:.3g}"
                )
            per_class.append(b)
        return [torch.stack([per_class[i] for i in m]) for _, _, m in self._groups]

    # -- access ---------------------------------------------------------------------------

    def subspace_groups(self) -> list[tuple[int, tuple[int, ...], torch.Tensor]]:
        """``(k, classes, bases)`` for every distinct dimension ``k`` (increasing): the classes
        of that dimension and their ``(len(classes), in_features, k)`` bases (the parameter or
        buffer itself)."""
        return [(k, m, getattr(self, name)) for name, k, m in self._groups]

    def class_bases(self) -> list[torch.Tensor]:
        """The ``(in_features, k_i)`` basis of every class, in class order (views)."""
        out: list[torch.Tensor | None] = [None] * self.num_classes
        for _, m, bases in self.subspace_groups():
            for j, i in enumerate(m):
                out[i] = bases[j]
        return out  # type: ignore[return-value]

    # -- forward --------------------------------------------------------------------------

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``input.shape[:-1] + (num_classes,)``."""
        _check_features(input, self.in_features)
        if self.training and self.trainable:
            self._check_on_manifold()
        x = _normalize_features(input)
        n = self.in_features
        parts = []
        for name, k, m in self._groups:
            bases = getattr(self, name)
            # (C, n, k) -> (n, C k): one matrix product for all classes of this dimension.
            flat = bases.permute(1, 0, 2).reshape(n, len(m) * k)
            proj = x @ flat.to(x.dtype)
            proj = proj.view(*proj.shape[:-1], len(m), k)
            parts.append(_ScaledProjectionNorm.apply(proj, self.scale))
        logits = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if self._class_order is not None:
            logits = logits.index_select(-1, self._class_order)
        return logits

    def _check_on_manifold(self) -> None:
        """Warn once if the bases of a few classes are no longer orthonormal (at forward calls
        1, 2, 4, ..., 1024 and then every 1024: one host synchronisation each time)."""
        if self._warned_off_manifold or _is_compiling():
            return
        self._forward_calls += 1
        if self._forward_calls < self._next_check:
            return
        self._next_check = self._forward_calls + min(self._forward_calls, _CHECK_EVERY)
        for name, _, m in self._groups:
            bases = getattr(self, name)
            sample = bases[:: max(1, len(m) // _CHECK_CLASSES)][:_CHECK_CLASSES]
            error, worst = _worst_basis(sample)
            if error > _orthonormal_tol(bases.dtype):
                self._warned_off_manifold = True
                cls = m[worst * max(1, len(m) // _CHECK_CLASSES)]
                warnings.warn(
                    f"GrassmannHead: the class subspaces are no longer orthonormal "
                    f"(max |S^T S - I| = {error:.3g} for class {cls} after "
                    f"{self._forward_calls} training forward passes); {_OFF_MANIFOLD_ADVICE}",
                    RuntimeWarning,
                    stacklevel=5,  # the caller of head(x): _check_on_manifold, forward, and
                    # Module._wrapped_call_impl / _call_impl in between
                )
                return

    # -- state ----------------------------------------------------------------------------

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Refuse non-orthonormal subspaces (``load_state_dict`` then raises, and this head
        keeps its subspaces); with ``assign=True`` the loaded tensors stay
        :class:`geoopt.ManifoldParameter` s on this head's manifold, and the class order of
        the logits is rebuilt on their device (a head built on the meta device or moved by
        ``to_empty`` has none)."""
        for name, _, m in self._groups:
            value = state_dict.get(prefix + name)
            own = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.shape != own.shape:
                continue  # missing or of the wrong shape: torch reports it
            error, worst = _worst_basis(value)
            tol = _orthonormal_tol(own.dtype)
            if error > tol:
                error_msgs.append(
                    f"{prefix + name} must hold orthonormal bases (max |S^T S - I| <= {tol:g}), "
                    f"got max |S^T S - I| = {error:.3g} for class {m[worst]}; "
                    f"{_OFF_MANIFOLD_ADVICE}"
                )
                return
        manifolds = {
            name: getattr(getattr(self, name), "manifold", None) for name, _, _ in self._groups
        }
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for name, manifold in manifolds.items():
            loaded = self._parameters.get(name)
            # load_state_dict(assign=True) (e.g. into a head built on the meta device) wraps
            # the loaded tensor in a plain nn.Parameter: every optimiser would then step it
            # as a Euclidean parameter
            if manifold is not None and not isinstance(loaded, geoopt.ManifoldParameter):
                self._parameters[name] = geoopt.ManifoldParameter(
                    loaded.detach(), manifold=manifold, requires_grad=loaded.requires_grad
                )
        if self._class_order is not None:
            # not in the state_dict (it follows from subspace_dims): rebuilt here, since after
            # to_empty() or on the meta device it holds no values
            device = getattr(self, self._groups[0][0]).device
            self._class_order = self._inverse_order().to(device)

    def extra_repr(self) -> str:
        if len(self._groups) == 1:
            dims = f"subspace_dim={self.subspace_dims[0]}"
        else:
            dims = "subspace_dim={" + ", ".join(f"{k}: {len(m)}" for _, k, m in self._groups)
            dims += "} (dimension: classes)"
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, {dims}, "
            f"scale={self.scale:g}, init={self.init!r}, trainable={self.trainable}, "
            f"retraction={self.retraction!r}"
        )


@torch.no_grad()
def reorthonormalize_(module: nn.Module) -> nn.Module:
    """Re-orthonormalise, in place, the subspaces of every :class:`GrassmannHead` in ``module``.

    Each basis ``S_i`` is replaced by the ``Q`` factor of its QR decomposition (signs fixed so
    that ``diag(R) > 0``), which spans the same subspace; the logits change only by the
    rounding error that is removed. The Riemannian optimisers do not need it: measured with
    float32 and momentum 0.9, the default QR retraction keeps ``max |S^T S - I|`` near ``2e-7``
    over 1000 steps by itself, the exponential map (``retraction="expmap"``) keeps its result
    within about 16 ulps (``2e-6``) however long the run (see
    :meth:`grassmann.manifold.Grassmann.expmap`), and :class:`grassmann.optim.GCRSGD`
    re-orthonormalises every ``reorth_every`` steps. Call this after the subspaces were changed
    by other means, e.g. stepped by a Euclidean optimiser (the head warns when they have left
    the manifold). Optimiser state (momentum) is left alone: it stays a valid tangent direction
    to first order.

    Returns ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for sub in module.modules():
        if isinstance(sub, GrassmannHead):
            for _, _, bases in sub.subspace_groups():
                bases.copy_(orthonormalize(bases, method="qr"))
    return module
