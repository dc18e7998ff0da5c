"""Which rows and tiles a process owns, and the collectives that combine the shares.

The generator's optimiser runs in one process or on the ranks of a ``torch.distributed``
process group (gloo on CPUs, NCCL on GPUs; launched by ``torchrun``). The ``N`` points of a
packing are split in contiguous blocks over the ``P`` ranks (rank ``r`` owns points
``[r * ceil(N/P), (r + 1) * ceil(N/P))``, the last rank fewer); each rank keeps the optimiser
state of its own rows only. Each step,

1. every rank's rows are all-gathered (``N k d`` numbers; the shards are padded to equal size),
2. every rank walks its share of the upper-triangular tiles (:func:`grassmann.tiles.partition`,
   balanced by products) and sums its contributions to the log-sum-exp normaliser, the running
   maximum and the gradient of all rows,
3. the normaliser and the gradient are all-reduced (sum; ``N k d`` numbers) and the maximum
   (max), and each rank keeps the gradient rows it owns.

So communication per step is ``O(N k d)`` against ``O(N^2 k^2 d / P)`` of compute. A
:class:`Shard` with ``group=None`` is the single-process case: it owns everything, walks every
tile, and its collectives do nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from grassmann.tiles import Tile, partition

from .kernels import tiles_for

__all__ = ["Shard"]


@dataclass
class Shard:
    """The part of an ``N``-point problem that this process owns.

    Attributes
    ----------
    num, block
        ``N`` points of ``k = block`` rows.
    tile
        Tile edge in rows (:func:`ebv_gen.kernels.tiles_for`).
    rank, world
        This process's rank and the number of ranks (0 and 1 without a group).
    group
        The ``torch.distributed`` process group, or ``None`` (one process).
    """

    num: int
    block: int
    tile: int
    rank: int = 0
    world: int = 1
    group: Any = None
    _tiles: list[Tile] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, num: int, block: int, tile: int, group: Any = None) -> Shard:
        """The shard of this process: everything without ``group``, else its rank's share.

        Raises
        ------
        ValueError
            A group with more ranks than points.
        """
        if group is None:
            return cls(num, block, tile)
        import torch.distributed as dist

        rank, world = dist.get_rank(group), dist.get_world_size(group)
        if world > num:
            raise ValueError(
                f"the process group has {world} ranks but the packing only {num} points: "
                f"use at most {num} ranks"
            )
        return cls(num, block, tile, rank, world, group)

    @property
    def tiles(self) -> list[Tile]:
        """The tiles this rank walks (computed on first use)."""
        if self._tiles is None:
            tiles = tiles_for(self.num, self.tile, self.block)
            self._tiles = tiles if self.world == 1 else partition(tiles, self.world)[self.rank]
        return self._tiles

    @property
    def distributed(self) -> bool:
        return self.group is not None

    @property
    def points_per_rank(self) -> int:
        return math.ceil(self.num / self.world)

    def point_range(self, rank: int | None = None) -> tuple[int, int]:
        """Points ``[p0, p1)`` owned by ``rank`` (default: this one)."""
        r = self.rank if rank is None else rank
        per = self.points_per_rank
        return min(r * per, self.num), min((r + 1) * per, self.num)

    @property
    def rows(self) -> slice:
        """This rank's rows of the flat ``(N k, d)`` layout."""
        p0, p1 = self.point_range()
        return slice(p0 * self.block, p1 * self.block)

    def own(self, Z: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``(R, N k, d)`` packings (a copy when distributed)."""
        return Z if not self.distributed else Z[:, self.rows].clone()

    def gather(self, Z_own: torch.Tensor) -> torch.Tensor:
        """All ranks' rows ``(R, N k, d)`` from each rank's own ``(R, rows, d)``."""
        if not self.distributed:
            return Z_own
        import torch.distributed as dist

        R, _, d = Z_own.shape
        per = self.points_per_rank * self.block
        padded = Z_own.new_zeros(R, per, d)
        padded[:, : Z_own.shape[1]] = Z_own
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        rows = [
            parts[r][:, : (self.point_range(r)[1] - self.point_range(r)[0]) * self.block]
            for r in range(self.world)
        ]
        return torch.cat(rows, dim=1)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the ranks, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """Maximum of ``t`` over the ranks, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return t

    def coherence(self, W: torch.Tensor, mode: str = "lines") -> float:
        """:func:`grassmann.coherence` of ``W`` (all rows, on every rank), each rank verifying
        its share of the tiles in float64: the same value as one process computes."""
        from grassmann.coherence import coherence_of_share

        value = coherence_of_share(W, mode, None, self.rank, self.world)
        if not self.distributed:
            return value
        return float(self.max_(torch.tensor([value], dtype=torch.float64, device=W.device)))

    def broadcast_(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Rank ``src``'s ``t`` on every rank, in place."""
        if self.distributed:
            import torch.distributed as dist

            dist.broadcast(t, src=src, group=self.group)
        return t
