"""grassmann.tiles: every pair exactly once, little waste on the diagonal, balanced shares."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grassmann.tiles import LEAF, Tile, partition, upper_tiles


def _pairs(tiles: list[Tile]) -> list[tuple[int, int]]:
    out = []
    for t in tiles:
        for i in range(t.i0, t.i1):
            for j in range(t.j0, t.j1):
                if not t.diagonal or i < j:
                    out.append((i, j))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 40), st.integers(1, 16))
def test_every_pair_is_covered_exactly_once(num, size, leaf):
    tiles = upper_tiles(num, size, leaf)
    pairs = _pairs(tiles)
    assert sorted(pairs) == [(i, j) for i in range(num) for j in range(i + 1, num)]
    for t in tiles:
        assert t.diagonal == (t.i0 == t.j0)
        assert (t.i1 == t.j1) if t.diagonal else (t.i1 <= t.j0)
        assert t.i1 - t.i0 <= size and t.j1 - t.j0 <= size
        if t.diagonal:
            assert t.i1 - t.i0 <= min(leaf, size)


def test_diagonal_blocks_cost_little_more_than_their_upper_half():
    num, size = 10_000, 2048
    work = sum(t.area for t in upper_tiles(num, size))
    needed = num * (num - 1) / 2
    # the leaves of the diagonal blocks: about LEAF / 2 extra products per point
    assert work / needed < 1 + LEAF / num + 1e-9
    whole = sum((min(a + size, num) - a) * (num - a) for a in range(0, num, size))
    assert work < 0.86 * whole  # full diagonal tiles did 1.2x the needed products


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 300), st.integers(1, 64), st.integers(1, 7))
def test_partition_keeps_every_tile_once_in_order_and_balances(num, size, parts):
    tiles = upper_tiles(num, size)
    shares = partition(tiles, parts)
    assert len(shares) == parts
    flat = [t for s in shares for t in s]
    assert sorted(flat) == sorted(tiles)
    for s in shares:
        assert s == [t for t in tiles if t in s]
    loads = [sum(t.area for t in s) for s in shares]
    biggest = max(t.area for t in tiles)
    assert max(loads) <= sum(loads) / parts + biggest


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="size and leaf must be >= 1"):
        upper_tiles(10, 0)
    with pytest.raises(ValueError, match="parts must be >= 1"):
        partition(upper_tiles(10, 3), 0)
