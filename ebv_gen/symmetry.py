r"""Starts with a cyclic symmetry: orbits of random points under an orthogonal map of finite order.

Many of the best known packings are unions of orbits of a finite group (Conway, Hardin & Sloane
1996 found several of theirs by imposing a symmetry), and a search over symmetric packings is a
search in a space of ``m`` times fewer variables, whose basins random starts of the whole space
rarely reach. The start of order ``m`` is

.. math:: Z = \{ g^k v_j : 0 \le k < m,\ 1 \le j \le G \} \cup \{ w_1, \dots, w_f \},
          \qquad N = m G + f,\ f < m,

with ``v_j`` and ``w_i`` random unit vectors and ``g = Q D Q^T`` a rotation of order ``m``:
``D`` turns each of the ``floor(d / 2)`` coordinate planes by ``2 pi a_i / m`` (``a_i``
uniform in ``0 .. m - 1``, not all ``0``, and not all ``m / 2`` in even ``d``, where ``g``
would be ``-I``: the same lines again), ``Q`` a uniform random rotation.

The optimiser (:class:`ebv_gen.adam.CoherenceAdam`) keeps the symmetry of an orbit start
without being told: the similarities are invariant under ``g`` acting on every point (and
permuting the orbits), so the surrogate's gradient is equivariant, and so are the moments and
the retraction. Only rounding (and the ``f`` points outside the orbits) breaks it, and where
the symmetric packing is unstable that grows (in float64, from 1e-15 to 4e-7 in 200 steps of
one of the tests' packings): a start is a way into a basin, not a constraint, and the minimax
finish is free to break the symmetry further where that lowers the maximum.
"""

from __future__ import annotations

import math

import torch

from grassmann._linalg import _qr_signfix
from grassmann._validation import check_int

__all__ = ["orbit_start", "rotation_of_order"]


def _check_plane(dim: int, order: int) -> None:
    """The plane's only rotations of order two are ``±I``."""
    if dim == 2 and order == 2:
        raise ValueError("dim=2 has no rotation of order=2 other than -I; use order >= 3")


def rotation_of_order(
    dim: int, order: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ``(d, d)`` orthogonal map ``g`` (float64) with ``g^order = I``, not ``±I``.

    ``g = Q D Q^T`` as in the module docstring; ``order >= 2`` and ``dim >= 2``.

    Raises
    ------
    ValueError
        If ``dim < 2`` or ``order < 2``, or for ``dim = order = 2`` (the only rotations of the
        plane of order two are ``±I``).
    """
    dim = check_int("dim", dim, minimum=2)
    order = check_int("order", order, minimum=2)
    _check_plane(dim, order)
    planes = dim // 2
    while True:
        a = torch.randint(0, order, (planes,), generator=generator)
        identity = bool((a == 0).all())
        minus = dim % 2 == 0 and bool((2 * a == order).all())
        if not (identity or minus):
            break
    theta = (2 * math.pi / order) * a.double()
    c, s = torch.cos(theta), torch.sin(theta)
    D = torch.eye(dim, dtype=torch.float64)
    idx = torch.arange(planes) * 2
    D[idx, idx], D[idx, idx + 1] = c, -s
    D[idx + 1, idx], D[idx + 1, idx + 1] = s, c
    # QR of a Gaussian matrix with diag(R) > 0: Haar-distributed (Mezzadri 2007)
    Q = _qr_signfix(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return Q @ D @ Q.T


def orbit_start(
    count: int,
    num: int,
    dim: int,
    order: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` starting packings ``(count, N, d)`` (float64) of unit vectors, each
    ``N // order`` random points with their orbits under a random rotation of order ``order``
    (:func:`rotation_of_order`, one per packing) and ``N mod order`` random points.

    Raises
    ------
    ValueError
        If ``N < 2 order`` (fewer than two orbits), or as :func:`rotation_of_order`.
    """
    count = check_int("count", count, minimum=0)
    order = check_int("order", order, minimum=2)
    num = check_int("num", num, minimum=2 * order)
    dim = check_int("dim", dim, minimum=2)
    _check_plane(dim, order)
    G, f = divmod(num, order)
    if count == 0:
        return torch.empty(0, num, dim, dtype=torch.float64)
    g = torch.stack([rotation_of_order(dim, order, generator) for _ in range(count)])
    V = torch.randn(count, G, dim, generator=generator, dtype=torch.float64)
    orbits = [V]
    for _ in range(order - 1):  # rows: v g^T = (g v)^T
        orbits.append(orbits[-1] @ g.transpose(1, 2))
    rest = torch.randn(count, f, dim, generator=generator, dtype=torch.float64)
    Z = torch.cat(orbits + [rest], dim=1)
    return Z / torch.linalg.vector_norm(Z, dim=-1, keepdim=True)
