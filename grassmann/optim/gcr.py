r"""The exact optimiser of Grassmann Class Representation (GCR, Wang, Li & Zhang, ICCV 2023).

The class subspaces of a :class:`grassmann.GrassmannHead` are points :math:`X` (``n x k``,
:math:`X^\top X = I`) of the Grassmann manifold. The official GCR optimiser moves them by one
rule, which :class:`GCRSGD` reproduces:

1. a *Euclidean* momentum buffer with torch's rule (no dampening): :math:`B_1 = G_1`, then
   :math:`B_t = m B_{t-1} + G_t`, where :math:`G_t` is the Euclidean gradient (no weight decay
   for the subspaces);
2. the buffer is projected onto the horizontal (tangent) space at the current point when it is
   used, :math:`H_t = B_t - X_t (X_t^\top B_t)`; the buffer itself is kept unprojected;
3. the point moves along the exact geodesic,
   :math:`X_{t+1} = \mathrm{Exp}_{X_t}(-\eta H_t)` with :math:`\eta = \mathrm{lr} \cdot
   \mathrm{lr\_factor}` (Edelman, Arias & Smith 1998, Thm 2.3);
4. at steps :math:`1, 1 + r, 1 + 2r, \dots` (``r = reorth_every``) the result is
   re-orthonormalised by the Q factor of its QR decomposition with :math:`\operatorname{diag} R
   > 0` (the official code uses an unfixed QR, whose column sign flips its Euclidean buffer does
   not follow; with the signs fixed the Q factor of a nearly orthonormal matrix is that matrix up
   to rounding, so the buffer stays aligned with the basis).

Ordinary (Euclidean) parameters in the same optimiser follow :class:`torch.optim.SGD` exactly
(``torch.optim.sgd.sgd``, with ``weight_decay``, and without ``lr_factor``).

The kernel below is evaluated on the transposes ``(..., k, n)``, the contiguous orientation of
the column-major bases of :class:`grassmann.GrassmannHead` (the layout of the official head's
``nn.Linear`` weight), and works through ``k x k`` Gram matrices. On an accelerator the only
host synchronisation is the check of the Cholesky factorisation at re-orthonormalisation steps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import geoopt
import torch
from torch.optim.sgd import sgd as _torch_sgd

from grassmann._validation import check_float, check_int
from grassmann.manifold import Grassmann
from grassmann.stiefel import _qr_signfix, _sym_funcm

__all__ = ["GCRSGD", "gcr_geodesic_step"]


# ----------------------------------------------------------------------------------------------
# kernels (no argument checks; batched over leading dimensions, device and dtype follow x)
# ----------------------------------------------------------------------------------------------


#: Terms of the Taylor series of cos(sqrt(M)) and sinc(sqrt(M)) in M, per dtype: for a spectral
#: radius of M at most 1 the remainder is below 1 / (2 terms)!: 1 / 18! < 2e-16 for float64
#: (unit roundoff 1.1e-16), 1 / 12! < 3e-9 for float32 (6e-8).
_SERIES_TERMS = {torch.float64: 9, torch.float32: 6}


@functools.cache
def _series_coefficients(terms: int, k: int, dtype: torch.dtype, device) -> list[torch.Tensor]:
    r"""``[a_i I; b_i I]`` (``2k x k``) for ``i = 0 .. terms - 1``: the Taylor coefficients
    :math:`a_i = (-1)^i / (2i)!` of :math:`\cos\sqrt{M}` and
    :math:`b_i = (-1)^i / (2i + 1)!` of :math:`\operatorname{sinc}\sqrt{M}`, stacked."""
    eye = torch.eye(k, dtype=dtype, device=device)
    return [
        torch.cat(
            [
                eye * ((-1) ** i / math.factorial(2 * i)),
                eye * ((-1) ** i / math.factorial(2 * i + 1)),
            ]
        )
        for i in range(terms)
    ]


def _cos_sinc_of_sqrt(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(\cos\sqrt{M}, \operatorname{sinc}\sqrt{M})` for a batch of symmetric positive
    semi-definite ``k x k`` matrices ``(B, k, k)`` (:math:`\operatorname{sinc} t = \sin t / t`).

    Both are entire functions of :math:`M` (even in :math:`\sqrt{M}`). On the CPU they are
    summed as Taylor series in :math:`M` after scaling each matrix by its own :math:`4^{-j}` so
    that its spectral radius (at most its infinity norm) is at most 1, and the scaling is undone
    by the double-angle formulas :math:`\cos 2t = 2\cos^2 t - 1`, :math:`\operatorname{sinc} 2t
    = \operatorname{sinc} t \cos t` applied ``j`` times. The two series share their Horner
    steps: :math:`[C; S] \leftarrow [C; S] M + [a_i I; b_i I]`, one batched product each. Each
    doubling can multiply the rounding error by 4, hence a scaling per matrix: the absolute
    error of each result is a small multiple of :math:`u \max(1, \|M\|)` (``u`` the unit
    roundoff), as for the eigendecomposition, whatever the other matrices of the batch. Several
    times cheaper than torch's batched ``eigh`` of small matrices on the CPU, which makes one
    LAPACK call per matrix. Elsewhere (CUDA's batched ``eigh`` is fast, and
    reading ``j`` would synchronise) they come from the eigendecomposition
    :math:`M = V \operatorname{diag}(\sigma^2) V^\top`.
    """
    if m.device.type != "cpu" or m.dtype not in _SERIES_TERMS:
        lam, vecs = torch.linalg.eigh(m)
        sigma = lam.clamp_min(0).sqrt()
        cos_m = _sym_funcm(sigma, vecs, torch.cos)
        return cos_m, _sym_funcm(sigma, vecs, lambda t: torch.sinc(t / math.pi))
    k = m.shape[-1]
    # Each matrix gets its own scaling: the doublings multiply the rounding error of the
    # series by up to 4 each, so one large step in the batch must not cost the others
    # accuracy. The infinity norm bounds the spectral radius (and is at most sqrt(k) times it).
    bound = m.abs().sum(-1).amax(-1)
    halvings = torch.where(
        torch.isfinite(bound) & (bound > 1.0), torch.log(bound).div_(math.log(4.0)).ceil_(), 0.0
    ).to(torch.int32)
    most = int(halvings.amax()) if m.numel() else 0
    scaled = torch.ldexp(m, (-2 * halvings)[:, None, None]) if most else m
    coeffs = _series_coefficients(_SERIES_TERMS[m.dtype], k, m.dtype, torch.device(m.device))
    both = coeffs[-1].expand(m.shape[0], 2 * k, k)
    for c in coeffs[-2::-1]:
        both = torch.baddbmm(c, both, scaled)
    uniform = most == 0 or bool((halvings == most).all())
    for i in range(most):
        doubled = both @ both[:, :k]  # [C^2; S C]
        doubled[:, :k].mul_(2.0).diagonal(dim1=-2, dim2=-1).sub_(1.0)  # 2 C^2 - I
        both = doubled if uniform else torch.where((halvings > i)[:, None, None], doubled, both)
    return both[:, :k], both[:, k:]


def gcr_geodesic_step(
    x: torch.Tensor, buf: torch.Tensor, lr: float, *, orthonormalize: bool = False
) -> torch.Tensor:
    r""":math:`\mathrm{Exp}_X(-\eta H)`, :math:`H = B - X (X^\top B)`: one GCR step along ``buf``.

    The exact geodesic of Edelman, Arias & Smith (1998, Thm 2.3),
    :math:`\mathrm{Exp}_X(U) = X V \cos(\Sigma) V^\top + P \sin(\Sigma) V^\top` for the thin
    SVD :math:`U = P \Sigma V^\top`, in the Gram form of :func:`grassmann.manifold._expmap`
    (:math:`P \Sigma = U V`, so :math:`\mathrm{Exp}_X(U) = X c(U^\top U) + U s(U^\top U)` with
    :math:`c = \cos\sqrt{\cdot}` and :math:`s = \operatorname{sinc}\sqrt{\cdot}`), and with
    the projection folded into the ``k x k`` factors so that :math:`H` is never formed. With
    :math:`A = B^\top X` (``k x k``):

    .. math::

        U^\top U = \eta^2 (B^\top B - A A^\top), \qquad
        Y^\top := \mathrm{Exp}_X(U)^\top = F B^\top + E X^\top, \quad
        F = -\eta\, s, \quad E = c + \eta\, s A .

    The first identity uses :math:`X^\top X = I` (true to the rounding that the
    re-orthonormalisation removes).

    ``orthonormalize=True`` returns instead the Q factor of :math:`Y = QR` with positive
    :math:`\operatorname{diag} R` (the sign-fixed QR; same subspace, orthonormal to rounding),
    computed in the same products: :math:`Y^\top Y = F B^\top B F^\top + F A E^\top +
    E A^\top F^\top + E X^\top X E^\top = L L^\top` (Cholesky, :math:`L = R^\top`) and
    :math:`Q^\top = L^{-1} Y^\top = (L^{-1} F) B^\top + (L^{-1} E) X^\top`: one more
    ``(k x n) @ (n x k)`` product (:math:`X^\top X`) instead of a Householder QR. Where a
    Cholesky factorisation fails (a rank-deficient :math:`Y`, which needs a broken input), the
    call falls back to Householder QR with fixed signs (checking costs one host
    synchronisation per call with ``orthonormalize``).

    Cost: four (five with ``orthonormalize``) batched products over the ``n x k`` entries
    (:math:`B^\top X`, :math:`B^\top B`, :math:`F B^\top`, and :math:`E X^\top` fused into
    it) and ``k x k`` work: the cosine and sinc of the step's Gram matrix (series on the CPU,
    a batched eigendecomposition elsewhere); no host synchronisation without
    ``orthonormalize``.

    Parameters
    ----------
    x
        ``(..., n, k)`` points with orthonormal columns (column-major storage, the layout of
        :class:`grassmann.GrassmannHead`, makes every product contiguous).
    buf
        ``(..., n, k)`` Euclidean direction (the momentum buffer), any component.
    lr
        Step length :math:`\eta` (the step is :math:`-\eta H`).
    orthonormalize
        Return the sign-fixed QR factor of the step's result (see above).

    Returns
    -------
    torch.Tensor
        ``(..., n, k)``, column-major; same dtype and device as ``x``.
    """
    n, k = x.shape[-2:]
    xt = x.mT.reshape(-1, k, n)
    bt = buf.mT.reshape(-1, k, n)
    # the k x k work in float32 at least (torch.linalg has no half-precision kernels)
    small = torch.promote_types(x.dtype, torch.float32)
    coef = torch.bmm(bt, xt.mT).to(small)  # A = B^T X
    gram_b = torch.bmm(bt, bt.mT).to(small)  # B^T B
    step_gram = torch.baddbmm(gram_b, coef, coef.mT, alpha=-1.0).mul_(lr * lr)  # U^T U
    cos_m, on_b = _cos_sinc_of_sqrt(step_gram)  # c and s
    on_x = torch.baddbmm(cos_m, on_b, coef, alpha=lr)  # E
    on_b.mul_(-lr)  # F
    if orthonormalize:
        gram_x = torch.bmm(xt, xt.mT).to(small)  # X^T X
        cross = on_b @ coef @ on_x.mT  # F A E^T
        gram_y = on_b @ gram_b @ on_b.mT + cross + cross.mT + on_x @ gram_x @ on_x.mT
        chol, info = torch.linalg.cholesky_ex(gram_y)
        if bool((info > 0).any()):
            y = torch.baddbmm(torch.bmm(on_b.to(x.dtype), bt), on_x.to(x.dtype), xt)
            return _qr_signfix(y.mT).reshape(x.shape)
        eye = torch.eye(k, dtype=small, device=x.device)
        inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^{-1}
        on_b, on_x = inv @ on_b, inv @ on_x
    out = torch.bmm(on_b.to(x.dtype), bt)
    out.baddbmm_(on_x.to(x.dtype), xt)
    return out.view(*x.shape[:-2], k, n).mT


# ----------------------------------------------------------------------------------------------
# the optimiser
# ----------------------------------------------------------------------------------------------


def _is_grassmann(p: torch.Tensor) -> bool:
    """Whether ``p`` is a geoopt tensor on a :class:`grassmann.Grassmann` manifold."""
    return isinstance(getattr(p, "manifold", None), Grassmann)


def _check_manifold(p: torch.Tensor, where: str) -> None:
    manifold = getattr(p, "manifold", None)
    if manifold is None or isinstance(manifold, (Grassmann, geoopt.Euclidean)):
        return
    raise ValueError(
        f"{where} lives on {type(manifold).__name__}, which GCRSGD cannot step: it steps "
        f"Euclidean parameters and grassmann.Grassmann ones; use geoopt.optim.RiemannianSGD "
        f"or RiemannianAdam for other manifolds"
    )


class GCRSGD(torch.optim.Optimizer):
    r"""Momentum SGD with the exact GCR update for the class subspaces.

    For every :class:`geoopt.ManifoldParameter` on :class:`grassmann.Grassmann` (the subspaces
    of :class:`grassmann.GrassmannHead`), with Euclidean gradient :math:`G_t`:

    .. math::

        B_t &= \begin{cases} G_1 & t = 1 \\ m B_{t-1} + G_t & t > 1 \end{cases}
        \qquad \text{(Euclidean momentum buffer, torch's rule)}\\
        X_{t+1} &= \mathrm{Exp}_{X_t}\bigl(-\mathrm{lr}\cdot\mathrm{lr\_factor}\,
        (B_t - X_t X_t^\top B_t)\bigr)
        \qquad \text{(exact geodesic of the projected buffer)}

    and at steps :math:`t = 1, 1 + r, 1 + 2r, \ldots` (:math:`r` = ``reorth_every``)
    :math:`X_{t+1}` is replaced by the Q factor of its QR decomposition with positive
    :math:`\operatorname{diag} R` (same subspace; removes the rounding error the exponential map
    accumulates). This is the update of the official GCR code (``RSGD`` in the authors'
    repository, Wang, Li & Zhang, ICCV 2023) with three corrections: the re-orthonormalisation
    counts steps per parameter (the official counter is global, shared by every subspace
    parameter), its QR has fixed signs (the official unfixed QR flips basis columns that the
    Euclidean buffer does not follow), and ``lr_factor`` applies to subspaces of any dimension
    (the official per-class-dimension branch ignores it).

    Every other parameter is updated exactly as by :class:`torch.optim.SGD` with the same
    ``lr``, ``momentum`` and ``weight_decay`` (``dampening=0``, no Nesterov), sparse gradients
    (``nn.Embedding(sparse=True)``) included. Weight decay is
    never applied to the subspaces: the term :math:`\lambda X` it would add to the gradient
    lies in the normal space and is removed by the projection.

    Parameters
    ----------
    params
        Parameters or parameter groups (dicts), as for any torch optimiser; every key below
        can be set per group. :func:`grassmann.optim.param_groups` builds the usual three groups.
    lr
        Learning rate (>= 0). Learning-rate schedulers change ``group["lr"]`` as usual; the
        subspaces then move with ``group["lr"] * group["lr_factor"]``.
    momentum
        Momentum factor :math:`m \in [0, 1)`; 0 disables the buffer (plain Riemannian SGD along
        geodesics).
    weight_decay
        L2 penalty of the Euclidean parameters (>= 0); never applied to the subspaces.
    reorth_every
        Re-orthonormalise the subspaces every this many steps (>= 1; the official default is
        5, and 1 in its AdamW and LAMB wrappers), starting with the first step.
    lr_factor
        Factor on the learning rate of the subspaces only (> 0; the official transformer and
        RSB recipes use 0.1-0.3 beside AdamW or LAMB).

    Notes
    -----
    State, in ``self.state[p]`` as for torch's optimisers (saved by :meth:`state_dict`):
    ``"momentum_buffer"`` (the Euclidean buffer :math:`B_t`, shape and layout of ``p``;
    absent while ``momentum == 0``) and, for subspaces, ``"step"`` (the number of steps taken).

    Cost per step for ``C`` subspaces of ``Gr(n, k)``: four batched products of
    :math:`C \cdot 2 n k^2` flops, batched ``k x k`` work (see :func:`gcr_geodesic_step`) and a
    few passes over the ``C n k`` entries; every ``reorth_every`` steps one more product and a
    batched ``k x k`` Cholesky factorisation for the QR.

    References
    ----------
    H. Wang, Z. Li, W. Zhang, "Grassmann Class Representation in Deep Learning", ICCV 2023.
    A. Edelman, T. A. Arias, S. T. Smith, "The geometry of algorithms with orthogonality
    constraints", SIAM J. Matrix Anal. Appl. 20 (2), 1998.

    Examples
    --------
    >>> from grassmann import GrassmannHead
    >>> from grassmann.optim import GCRSGD, param_groups
    >>> model = torch.nn.Sequential(torch.nn.Linear(32, 16), GrassmannHead(16, 10, 4))
    >>> opt = GCRSGD(param_groups(model, weight_decay=5e-4), lr=0.1, momentum=0.9)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        reorth_every: int = 5,
        lr_factor: float = 1.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "reorth_every": reorth_every,
            "lr_factor": lr_factor,
        }
        _check_hyperparameters(defaults, "")
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as :meth:`torch.optim.Optimizer.add_param_group`), checking its options
        and that every parameter is Euclidean or on :class:`grassmann.Grassmann`."""
        super().add_param_group(param_group)
        index = len(self.param_groups) - 1
        group = self.param_groups[index]
        try:
            _check_hyperparameters(group, f"param_groups[{index}]")
            for j, p in enumerate(group["params"]):
                _check_manifold(p, f"parameter {j} of param_groups[{index}]")
        except (TypeError, ValueError):
            del self.param_groups[index]  # a refused group must not be stepped later
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the
        loss (optional, as for :class:`torch.optim.SGD`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            euclidean, grads, buffers = [], [], []
            for j, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if _is_grassmann(p):
                    if p.grad.is_sparse:
                        raise RuntimeError(
                            f"GCRSGD: parameter {j} of param_groups[{index}] (a subspace of "
                            f"shape {tuple(p.shape)}) has a sparse gradient; the geodesic step "
                            f"needs a dense one"
                        )
                    self._subspace_step(p, group)
                else:
                    euclidean.append(p)
                    grads.append(p.grad)
                    buffers.append(self.state[p].get("momentum_buffer"))
            if euclidean:
                _torch_sgd(
                    euclidean,
                    grads,
                    buffers,
                    has_sparse_grad=any(g.is_sparse for g in grads),
                    weight_decay=group["weight_decay"],
                    momentum=group["momentum"],
                    lr=group["lr"],
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                )
                if group["momentum"] != 0:
                    for p, buf in zip(euclidean, buffers, strict=True):
                        self.state[p]["momentum_buffer"] = buf
        return loss

    def _subspace_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        grad = p.grad
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.detach().clone()
                state["momentum_buffer"] = buf
            else:  # buf = m buf + g in one pass
                torch.add(grad, buf, alpha=momentum, out=buf)
        else:
            buf = grad
        step = state.get("step", 0) + 1
        state["step"] = step
        reorth = (step - 1) % group["reorth_every"] == 0
        p.copy_(gcr_geodesic_step(p, buf, group["lr"] * group["lr_factor"], orthonormalize=reorth))


def _check_hyperparameters(group: dict[str, Any], where: str) -> None:
    """Check (and normalise to Python numbers) the options of a group or of the defaults."""
    prefix = f"{where}: " if where else ""
    group["lr"] = check_float(f"{prefix}lr", group["lr"], minimum=0.0)
    group["momentum"] = check_float(f"{prefix}momentum", group["momentum"], minimum=0.0)
    if group["momentum"] >= 1.0:
        raise ValueError(f"{prefix}momentum must be < 1, got {group['momentum']}")
    group["weight_decay"] = check_float(f"{prefix}weight_decay", group["weight_decay"], minimum=0.0)
    group["reorth_every"] = check_int(f"{prefix}reorth_every", group["reorth_every"], minimum=1)
    group["lr_factor"] = check_float(
        f"{prefix}lr_factor", group["lr_factor"], minimum=0.0, strict_minimum=True
    )
