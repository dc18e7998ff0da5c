"""Hadamard matrices, Steiner ETFs, packings of triples and DeVore's frames: identities, exact
coherence, errors."""

from __future__ import annotations

import math

import pytest
import torch

from grassmann import (
    affine_plane_frame,
    coherence,
    devore_frame,
    hadamard,
    lower_bound,
    steiner_etf,
    triple_packing,
    triple_packing_frame,
)
from grassmann.designs import (
    affine_plane_frame_size,
    hadamard_order,
    steiner_etf_size,
    triple_packing_size,
)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12, 20, 24, 28, 36, 44, 52, 60, 68, 76, 100, 108])
def test_hadamard_matrices_are_orthogonal_and_normalised(n):
    # 12, 20, 28, 44, 60, 68, 108 by Paley I, 36, 52, 76, 100 by Paley II, 24 doubled
    h = hadamard(n)
    assert h.shape == (n, n) and set(h.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=h.dtype))
    assert (h[0] == 1).all() and (h[:, 0] == 1).all()


def test_hadamard_orders_reached():
    orders = [n for n in range(4, 200, 4) if not hadamard_order(n)]
    assert orders == [92, 116, 156, 172, 184, 188]
    assert not hadamard_order(6) and hadamard_order(2) and hadamard_order(1)


@pytest.mark.parametrize(
    ("v", "design", "shape"),
    [(4, "pairs", (16, 6)), (8, "pairs", (64, 28)), (12, "pairs", (144, 66))]
    + [(7, "triples", (28, 7)), (15, "triples", (120, 35)), (31, "triples", (496, 155))],
)
def test_steiner_etfs_are_equiangular_tight_and_meet_the_welch_bound(v, design, shape):
    frame = steiner_etf(v, design)
    num, dim = shape
    n_, b, mu = steiner_etf_size(v, design)
    assert frame.shape == shape == (n_, b)
    gram = (frame @ frame.T).abs()
    off = gram[~torch.eye(num, dtype=torch.bool)]
    assert (off - mu).abs().max() <= 1e-14  # equiangular
    assert torch.allclose(frame.T @ frame, num / dim * torch.eye(dim, dtype=frame.dtype))
    assert abs(mu - lower_bound(num, dim).value) <= 1e-12  # Welch


def test_steiner_etf_prefix_dtype_and_device(device):
    frame = steiner_etf(32, "pairs", 1000, dtype=torch.float32, device=device)
    assert frame.shape == (1000, 496) and frame.dtype == torch.float32
    assert frame.device.type == device.type
    assert abs(coherence(frame) - 1 / 31) < 1e-6
    assert torch.equal(steiner_etf(8, "pairs", 20), steiner_etf(8, "pairs")[:20])


@pytest.mark.parametrize(("q", "degree"), [(2, 1), (3, 2), (4, 2), (5, 3), (8, 2), (9, 2)])
def test_devore_frame_levels_have_coherence_s_over_q(q, degree):
    frame = devore_frame(q, degree)
    assert frame.shape == (q ** (degree + 1), q * q)
    assert torch.allclose(frame.norm(dim=1), torch.ones(len(frame), dtype=torch.float64))
    assert coherence(frame[:q]) == 0.0  # the constants
    for s in range(1, degree + 1):
        # the first q^(s+1) rows are the polynomials of degree <= s; one more row of degree s
        for k in {q**s + 1, q ** (s + 1)}:
            assert abs(coherence(frame[:k]) - s / q) <= 1e-12


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="no Hadamard matrix of order n=92"):
        hadamard(92)
    with pytest.raises(ValueError, match="needs v to be a Hadamard order >= 4.*got v=6"):
        steiner_etf(6)
    with pytest.raises(ValueError, match="needs v to be 2\\^k - 1 >= 7, got v=9"):
        steiner_etf(9, "triples")
    with pytest.raises(ValueError, match="design must be one of"):
        steiner_etf(8, "quads")
    with pytest.raises(ValueError, match="num must be <= 64"):
        steiner_etf(8, "pairs", 65)
    with pytest.raises(ValueError, match="q must be a prime power, got 6"):
        devore_frame(6, 2)
    with pytest.raises(ValueError, match="degree must be <= 4"):
        devore_frame(5, 5)
    with pytest.raises(ValueError, match="num must be <= 125"):
        devore_frame(5, 2, 126)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype.*torch.int64"):
        devore_frame(5, 2, dtype=torch.int64)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype.*torch.int64"):
        steiner_etf(8, dtype=torch.int64)
    assert math.isclose(steiner_etf_size(32)[2], 1 / 31)
    assert steiner_etf_size(6) is None and steiner_etf_size(9, "triples") is None


def _largest_packing(v):
    """Schönheim's bound, attained for every v (Spencer 1968): the most triples on v points of
    which any two share at most one point."""
    return (v * ((v - 1) // 2)) // 3 - (1 if v % 6 == 5 else 0)


@pytest.mark.parametrize("v", range(3, 64))
def test_triple_packings_share_at_most_one_point_and_reach_the_stated_size(v):
    blocks = triple_packing(v)
    assert blocks.shape == (triple_packing_size(v), 3)
    assert blocks.min() >= 0 and blocks.max() < v
    assert (blocks[:, 0] < blocks[:, 1]).all() and (blocks[:, 1] < blocks[:, 2]).all()
    # two triples sharing two points would share a pair: every pair at most once
    pairs = {(int(t[i]), int(t[j])) for t in blocks for i, j in ((0, 1), (0, 2), (1, 2))}
    assert len(pairs) == 3 * len(blocks)
    if v % 6 in (1, 3):  # a Steiner triple system: every pair exactly once
        assert len(pairs) == v * (v - 1) // 2
    short = {4: (v - 4) // 6, 5: (v - 5) // 3}.get(v % 6, 0) if v >= 10 else 0
    assert len(blocks) == _largest_packing(v) - short


@pytest.mark.parametrize("v", [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 16, 20, 25])
def test_triple_packing_frames_have_coherence_exactly_one_third(v):
    frame = triple_packing_frame(v)
    assert frame.shape == (4 * triple_packing_size(v), v)
    # 3 <v_i, v_j> is an integer: 3 on the diagonal, 0 or ±1 off it, -1 within a triple
    gram = 3 * (frame @ frame.T)
    exact = gram.round()
    assert (gram - exact).abs().max() <= 1e-13
    off = exact[~torch.eye(len(frame), dtype=torch.bool)]
    assert set(off.abs().unique().tolist()) <= {0.0, 1.0} and (exact.diagonal() == 3).all()
    g = len(frame) // 4
    own = exact.reshape(g, 4, g, 4)[torch.arange(g), :, torch.arange(g), :]  # (g, 4, 4)
    assert (own == 4 * torch.eye(4, dtype=own.dtype) - 1).all()
    assert abs(coherence(frame) - 1 / 3) <= 1e-15


@pytest.mark.parametrize("v", [5, 6, 7, 8, 10, 11, 13, 16, 19, 22, 61])
def test_triple_packing_frames_span_early_and_are_tight_where_the_packing_is_regular(v):
    frame = triple_packing_frame(v)
    # the first triples cover every point: 4 v rows (fewer for small v) span R^v
    assert torch.linalg.matrix_rank(frame[: 4 * v]) == v
    gram = frame.T @ frame
    tight = torch.allclose(gram, gram.diagonal().mean() * torch.eye(v, dtype=gram.dtype))
    assert tight == (v % 6 in (0, 1, 2, 3))  # every point on (v - 1)/2 or (v - 2)/2 triples


def test_triple_packing_frame_in_r8_matches_the_table_at_29_to_32_lines():
    # 8 triples on 8 points (the affine plane of order 3 less a point): 32 lines at 1/3, the
    # value of Sloane's table for 29, 30, 31 and 32 lines in R^8
    frame = triple_packing_frame(8)
    assert frame.shape == (32, 8)
    for n in (29, 30, 31, 32):
        assert abs(coherence(frame[:n]) - 1 / 3) <= 1e-15


def test_triple_packing_frame_prefix_dtype_device_and_errors(device):
    frame = triple_packing_frame(13, 50, dtype=torch.float32, device=device)
    assert frame.shape == (50, 13) and frame.dtype == torch.float32
    assert frame.device.type == device.type
    assert torch.equal(triple_packing_frame(13, 50), triple_packing_frame(13)[:50])
    with pytest.raises(ValueError, match="v"):
        triple_packing_frame(2)
    with pytest.raises(ValueError, match="num"):
        triple_packing_frame(8, 33)
    with pytest.raises(ValueError, match="num"):
        triple_packing_frame(8, 0)
    with pytest.raises(TypeError, match="v"):
        triple_packing_frame(8.0)
    with pytest.raises(ValueError, match="v"):
        triple_packing_size(1)


@pytest.mark.parametrize("q", [3, 7, 11])
def test_affine_plane_frames_have_coherence_exactly_one_over_q(q):
    frame = affine_plane_frame(q)
    num, dim, mu = affine_plane_frame_size(q)
    assert frame.shape == (num, dim) == (q * (q + 1) ** 2, q * q) and mu == 1 / q
    assert torch.allclose(frame.norm(dim=1), torch.ones(num, dtype=frame.dtype))
    # q <v_i, v_j> is an integer: q on the diagonal, -1 within a line, 0 or ±1 between lines
    gram = q * (frame @ frame.T)
    exact = gram.round()
    assert (gram - exact).abs().max() <= 1e-12
    off = exact[~torch.eye(num, dtype=torch.bool)]
    assert set(off.abs().unique().tolist()) == {0.0, 1.0}
    lines = num // (q + 1)
    own = exact.reshape(lines, q + 1, lines, q + 1)[torch.arange(lines), :, torch.arange(lines)]
    assert (own == (q + 1) * torch.eye(q + 1, dtype=own.dtype) - 1).all()
    # each parallel class (q lines of one slope, q (q + 1) rows) covers every point once, so
    # its lines are pairwise orthogonal; lines of two classes meet in exactly one point
    support = (
        (frame != 0).to(torch.int64).reshape(q + 1, q, q + 1, dim)[:, :, 0]
    )  # (class, line, point)
    assert (support.sum(dim=1) == 1).all()
    meets = torch.einsum("alp,bmp->albm", support, support)
    cross = ~torch.eye(q + 1, dtype=torch.bool)[:, None, :, None].expand_as(meets)
    assert (meets[cross] == 1).all()
    assert abs(coherence(frame) - 1 / q) <= 1e-15
    # tight: every point is on q + 1 lines, each adding (q + 1)/q times the identity
    gram = frame.T @ frame
    assert torch.allclose(gram, (q + 1) ** 2 / q * torch.eye(dim, dtype=gram.dtype))
    assert torch.linalg.matrix_rank(frame[: q * (q + 1)]) == dim  # the first parallel class


def test_affine_plane_frame_of_q_19_and_the_sizes_that_exist():
    frame = affine_plane_frame(19)
    assert frame.shape == (7600, 361) and abs(coherence(frame) - 1 / 19) <= 1e-15
    valid = [q for q in range(2, 80) if affine_plane_frame_size(q) is not None]
    assert valid == [3, 7, 11, 19, 23, 27, 31, 43, 47, 59, 67, 71, 79]  # prime powers 3 mod 4
    # within a factor of about 1 + 1/(2q) of the Welch bound
    for q in (7, 11, 19):
        num, dim, mu = affine_plane_frame_size(q)
        ratio = mu / lower_bound(num, dim).value
        assert 1 < ratio < 1 + 1 / (2 * q)


def test_affine_plane_frame_prefix_dtype_device_and_errors(device):
    frame = affine_plane_frame(7, 100, dtype=torch.float32, device=device)
    assert frame.shape == (100, 49) and frame.dtype == torch.float32
    assert frame.device.type == device.type
    assert torch.equal(affine_plane_frame(7, 100), affine_plane_frame(7)[:100])
    for q in (5, 9, 15):  # 1 (mod 4), 1 (mod 4) and not a prime power
        with pytest.raises(ValueError, match=f"q={q}"):
            affine_plane_frame(q)
    with pytest.raises(ValueError, match="num"):
        affine_plane_frame(7, 449)
    with pytest.raises(TypeError, match="q"):
        affine_plane_frame(7.0)
    with pytest.raises(ValueError, match="q"):
        affine_plane_frame_size(1)
