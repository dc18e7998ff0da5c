"""Tiles of a streamed Gram matrix: the upper-triangular block pairs, without waste on the
diagonal, and their split over the ranks of a process group.

Every pass over the pairs ``i < j`` of ``N`` points in this package (the coherence and its
report, the subspace coherence, the optimiser's surrogate, the published baseline, the
finish's scan of the near-maximal pairs) walks the same tiles, given by :func:`upper_tiles`:

* the off-diagonal tiles ``(I, J)``, ``I < J``, of ``size x size`` point blocks, computed whole;
* each diagonal block ``I`` split recursively in halves: its two half-size diagonal blocks and
  the off-diagonal tile between them, until a diagonal block has at most :data:`LEAF` points.
  Only the leaves are computed whole (both triangles), so a diagonal block of ``L`` points
  costs ``L^2 / 2 + L * LEAF / 2`` products instead of ``L^2``: with ``size = 2048`` and
  ``LEAF = 256`` the whole pass does ``N^2 / 2 (1 + 1/8 * size / N)`` products where the full
  diagonal tiles cost ``N^2 / 2 (1 + size / N)``.

A tile is ``(i0, i1, j0, j1)`` in points (multiply by ``k`` for the rows of ``k``-blocks);
``diagonal`` is True when ``i0 == j0`` (then ``i1 == j1``, and only the pairs above the
diagonal of the tile count).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LEAF", "Tile", "partition", "upper_tiles"]

#: Diagonal blocks of at most this many points are computed whole.
LEAF = 256


class Tile(NamedTuple):
    """Points ``[i0, i1)`` against points ``[j0, j1)``; ``i1 <= j0`` or the same block."""

    i0: int
    i1: int
    j0: int
    j1: int

    @property
    def diagonal(self) -> bool:
        """True for a block against itself (only its upper triangle counts)."""
        return self.i0 == self.j0

    @property
    def area(self) -> int:
        """Products the tile computes: ``(i1 - i0) (j1 - j0)``."""
        return (self.i1 - self.i0) * (self.j1 - self.j0)


def _diagonal(a0: int, a1: int, leaf: int, out: list[Tile]) -> None:
    if a1 - a0 <= leaf:
        out.append(Tile(a0, a1, a0, a1))
        return
    mid = a0 + (a1 - a0 + 1) // 2
    _diagonal(a0, mid, leaf, out)
    out.append(Tile(a0, mid, mid, a1))
    _diagonal(mid, a1, leaf, out)


def upper_tiles(num: int, size: int, leaf: int = LEAF) -> list[Tile]:
    """The tiles that cover every pair ``i < j`` of ``num`` points exactly once.

    Parameters
    ----------
    num
        Number of points ``N``.
    size
        Block edge in points (``>= 1``); off-diagonal tiles are at most ``size x size``.
    leaf
        Diagonal blocks of at most ``leaf`` points are computed whole (default :data:`LEAF`).

    Returns
    -------
    list of Tile
        Row-major over the block rows; within a block row the diagonal block's pieces come
        first. Deterministic for given arguments.
    """
    if size < 1 or leaf < 1:
        raise ValueError(f"size and leaf must be >= 1, got size={size}, leaf={leaf}")
    out: list[Tile] = []
    for a0 in range(0, num, size):
        a1 = min(a0 + size, num)
        _diagonal(a0, a1, min(leaf, size), out)
        for b0 in range(a1, num, size):
            out.append(Tile(a0, a1, b0, min(b0 + size, num)))
    return out


def partition(tiles: list[Tile], parts: int) -> list[list[Tile]]:
    """Split ``tiles`` into ``parts`` lists of about equal work (products).

    Greedy longest-processing-time: tiles by decreasing area (ties by position), each to the
    least loaded part (ties to the lowest index); each part keeps its tiles in their original
    order. Deterministic, so that every rank of a process group computes the same split
    without communicating; the largest load is within ``4/3`` of the best possible.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    order = sorted(range(len(tiles)), key=lambda i: (-tiles[i].area, i))
    load = [0] * parts
    owner = [0] * len(tiles)
    for i in order:
        p = min(range(parts), key=lambda q: (load[q], q))
        owner[i] = p
        load[p] += tiles[i].area
    return [[t for i, t in enumerate(tiles) if owner[i] == p] for p in range(parts)]
