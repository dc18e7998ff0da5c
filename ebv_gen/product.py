"""The search space of the generator: a product of ``N`` spheres (``k = 1``) or Grassmannians
(``k > 1``), in the flat row layout of :mod:`ebv_gen.kernels`.

A point of the product is ``Z`` of shape ``(R, N k, d)``: ``R`` packings, each ``N`` blocks of
``k`` orthonormal rows. Tangent vectors at ``Z`` are the ``U`` with ``U_i Z_i^T = 0`` for every
block (the horizontal space of the Grassmannian, Edelman, Arias and Smith 1998, for ``k > 1``).
"""

from __future__ import annotations

import torch

from grassmann._linalg import _qr_signfix

__all__ = ["project", "random_start", "retract"]


def project(Z: torch.Tensor, U: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Project ``U`` onto the (horizontal) tangent space at ``Z``: ``U_i - (U_i Z_i^T) Z_i``."""
    if block == 1:
        return U - (U * Z).sum(dim=-1, keepdim=True) * Z
    R, M, d = Z.shape
    Zb = Z.view(R, M // block, block, d)
    Ub = U.view(R, M // block, block, d)
    return (Ub - (Ub @ Zb.transpose(-1, -2)) @ Zb).view(R, M, d)


def retract(Z: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Map each point back to the manifold: normalise rows (``k = 1``) or orthonormalise each
    ``k``-block of rows by QR with the signs of ``diag(R)`` made positive (``k > 1``)."""
    if block == 1:
        return Z / torch.linalg.vector_norm(Z, dim=-1, keepdim=True)
    R, M, d = Z.shape
    Q = _qr_signfix(Z.view(R, M // block, block, d).transpose(-1, -2))  # (R, N, d, k)
    return Q.transpose(-1, -2).reshape(R, M, d).contiguous()


def random_start(
    restarts: int,
    num: int,
    dim: int,
    *,
    block: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random starting packings ``(R, N k, d)``: Gaussian rows retracted to the manifold.

    For ``N k <= d`` the start is one orthonormal frame (a global optimum, coherence 0).
    The Gaussian draw happens on the CPU with ``generator`` (float64) so that the start is the
    same on every device for a given seed.
    """
    rows = num * block
    g = torch.randn(restarts, rows, dim, generator=generator, dtype=torch.float64)
    if dim >= rows:
        g = _qr_signfix(g.transpose(1, 2)).transpose(1, 2)
    else:
        g = retract(g, block)
    return g.to(dtype=dtype, device=device).contiguous()
