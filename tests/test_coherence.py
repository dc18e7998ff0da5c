"""Tiled coherence against dense computations, reports, subspace coherence, memory."""

from __future__ import annotations

import json
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann import coherence, coherence_report, constructions, subspace_coherence
from tests._memory import peak_rss_added
from tests.test_accuracy_reference import mp_matrix, mp_orthonormal, mp_principal_angles


def dense(W: torch.Tensor, mode: str) -> float:
    U = torch.nn.functional.normalize(W.to(torch.float64), dim=1)
    G = U @ U.T
    G.fill_diagonal_(-math.inf)
    if mode == "lines":
        G = (U @ U.T).abs()
        G.fill_diagonal_(-math.inf)
    return float(G.max())


@given(
    num=st.integers(2, 70),
    dim=st.integers(1, 12),
    chunk=st.integers(1, 80),
    mode=st.sampled_from(["lines", "sphere"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_tiled_coherence_equals_dense_for_every_chunk(num, dim, chunk, mode, seed):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(num, dim, generator=gen, dtype=torch.float64)
    assert abs(coherence(W, mode=mode, chunk_size=chunk) - dense(W, mode)) <= 1e-14


@given(
    num=st.integers(2, 60),
    dim=st.integers(1, 40),
    chunk=st.integers(1, 64),
    mode=st.sampled_from(["lines", "sphere"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_float32_input_gives_float64_answer_of_the_upcast_values(num, dim, chunk, mode, seed):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(num, dim, generator=gen).to(torch.float32)
    assert abs(coherence(W, mode=mode, chunk_size=chunk) - dense(W.double(), mode)) <= 1e-14


def test_float32_verification_finds_near_ties():
    # many pairs within float32 rounding of each other: the float64 answer must still be exact
    frame = constructions.paley_etf(26)
    W = (frame + 1e-7 * torch.randn(26, 13, dtype=torch.float64)).to(torch.float32)
    for chunk in (1, 3, 7, 26):
        assert abs(coherence(W, chunk_size=chunk) - dense(W.double(), "lines")) <= 1e-14


def test_matches_on_device_and_dtype(device, dtype):
    W = torch.randn(300, 9, dtype=dtype, device=device)
    for mode in ("lines", "sphere"):
        assert abs(coherence(W, mode=mode, chunk_size=64) - dense(W.cpu(), mode)) <= 1e-14


def test_scale_invariance_and_two_vectors():
    W = torch.tensor([[3.0, 4.0], [0.0, -2.0]], dtype=torch.float64)
    assert coherence(W) == pytest.approx(0.8, abs=1e-15)
    assert coherence(W, mode="sphere") == pytest.approx(-0.8, abs=1e-15)


@pytest.mark.parametrize(
    ("W", "kwargs", "exc", "match"),
    [
        (torch.randn(1, 4), {}, ValueError, "at least 2 vectors"),
        (torch.randn(4), {}, ValueError, "2-D tensor"),
        (torch.tensor([[1.0, 0.0], [0.0, 0.0]]), {}, ValueError, "zero row"),
        (torch.tensor([[1.0, math.nan], [0.0, 1.0]]), {}, ValueError, "finite"),
        (torch.randn(4, 3), {"mode": "circle"}, ValueError, "mode must be one of"),
        (torch.randn(4, 3), {"chunk_size": 0}, ValueError, "chunk_size must be >= 1"),
        (np.ones((3, 2)), {}, TypeError, "torch.Tensor"),
    ],
)
def test_invalid_inputs_raise(W, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        coherence(W, **kwargs)


def test_report_matches_dense_statistics():
    torch.manual_seed(1)
    W = torch.randn(157, 6, dtype=torch.float64)
    for mode in ("lines", "sphere"):
        rep = coherence_report(W, mode=mode, chunk_size=40, bins=2000)
        U = torch.nn.functional.normalize(W, dim=1)
        iu = torch.triu_indices(157, 157, offset=1)
        vals = (U @ U.T)[iu[0], iu[1]]
        if mode == "lines":
            vals = vals.abs()
        assert abs(rep.coherence - float(vals.max())) <= 1e-14
        assert rep.mean == pytest.approx(float(vals.mean()), abs=1e-13)
        width = (1.0 if mode == "lines" else 2.0) / 2000
        for q, v in rep.quantiles.items():
            assert abs(v - float(torch.quantile(vals, q))) <= width + 1e-12
        assert rep.num_pairs == 1 and len(rep.pairs) == 1
        i, j = rep.pairs[0]
        g = float(U[i] @ U[j])
        assert abs((abs(g) if mode == "lines" else g) - rep.coherence) <= 1e-14
        edges, counts = rep.histogram
        assert counts.sum() == 157 * 156 // 2 and len(edges) == 2001
        assert rep.gap == pytest.approx(rep.coherence - rep.bound)
        json.dumps(rep.as_dict())


def test_report_lists_all_attaining_pairs_of_an_etf():
    rep = coherence_report(constructions.johnson_etf(), chunk_size=5, max_pairs=10)
    assert rep.num_pairs == 28 * 27 // 2 and len(rep.pairs) == 10
    assert rep.bound_name == "welch" and abs(rep.gap) <= 1e-12
    assert all(i < j for i, j in rep.pairs)


def _random_stack(num, n, k, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(num, n, k, generator=gen, dtype=torch.float64))
    return q


def _pair_angles(X) -> dict[tuple[int, int], list[float]]:
    """Principal angles of every pair, from mpmath at 50 digits (exact to float64).

    Not scipy.linalg.subspace_angles: where 2k > n the spans intersect and an angle is exactly
    0, and scipy 1.17 returns up to ~1.5e-8 there (it takes such angles from arccos of cosines
    that round to 1), less accurate than the code under test.
    """
    with mpmath.workdps(50):
        bases = [mp_orthonormal(mp_matrix(x)) for x in X]
        return {
            (i, j): [float(t) for t in mp_principal_angles(bases[i], bases[j])]
            for i in range(len(X))
            for j in range(i + 1, len(X))
        }


def _brute_force(angles):
    best_angle = min(min(ang) for ang in angles.values())
    best_dist = min(math.sqrt(sum(math.sin(t) ** 2 for t in ang)) for ang in angles.values())
    return best_angle, best_dist


@given(
    num=st.integers(2, 12),
    n=st.integers(2, 7),
    k=st.integers(1, 4),
    chunk=st.integers(1, 13),
    seed=st.integers(0, 10**6),
)
def test_subspace_coherence_matches_brute_force_50_digit_angles(num, n, k, chunk, seed):
    k = min(k, n - 1) if n > 1 else 1
    X = _random_stack(num, n, k, seed)
    res = subspace_coherence(X, chunk_size=chunk)
    angles = _pair_angles(X)
    angle, dist = _brute_force(angles)
    assert res.min_angle == pytest.approx(angle, abs=1e-12)
    assert res.min_chordal_distance == pytest.approx(dist, abs=1e-12)
    i, j = res.pair_angle
    assert i < j
    assert min(angles[(i, j)]) == pytest.approx(res.min_angle, abs=1e-12)


def test_subspace_coherence_small_angles_are_accurate():
    X = _random_stack(5, 8, 3, 0)
    # X4 = X0 cos t + Q sin t with Q orthonormal and orthogonal to X0: all angles equal t
    t = 1e-9
    full, _ = torch.linalg.qr(torch.cat([X[0], torch.randn(8, 3, dtype=torch.float64)], 1))
    X[4] = X[0] * math.cos(t) + full[:, 3:6] * math.sin(t)
    res = subspace_coherence(X)
    assert res.pair_angle == (0, 4) and res.pair_distance == (0, 4)
    assert res.min_angle == pytest.approx(t, rel=1e-6)  # arccos would give 0 here
    assert res.min_chordal_distance == pytest.approx(math.sqrt(3) * t, rel=1e-6)


def test_subspace_coherence_invalid_inputs():
    with pytest.raises(ValueError, match="orthonormal columns"):
        subspace_coherence(torch.randn(4, 5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2 subspaces"):
        subspace_coherence(_random_stack(1, 5, 2, 0))
    with pytest.raises(ValueError, match="3-D tensor"):
        subspace_coherence(torch.randn(4, 5))


@pytest.mark.slow
def test_coherence_memory_is_linear_in_n_within_1gb_at_200k_by_64():
    """Issue 3: coherence of a 200,000 x 64 float32 matrix within 1 GB, where the N x N
    float32 Gram matrix would be 160 GB. What the call adds to the peak resident memory of a
    fresh process (tests/_memory.py) is O(N d + chunk^2): measured 55, 63, 96 and 89 MB at
    N = 20k, 50k, 100k and 200k. 200k costs 20-100 s on 2 cores, so the test runs at N = 50k
    with the 1 GB allowance scaled linearly in N, 250 MB: a Gram matrix (10 GB) or an
    N x chunk strip (50k x 2048 x 4 = 410 MB) fails it as it would fail 1 GB at 200k."""
    n, d = 50_000, 64
    added, mu = peak_rss_added(
        setup=f"""
            import torch
            torch.set_num_threads(2)
            from grassmann import coherence
            g = torch.Generator().manual_seed(0)
            coherence(torch.randn(5000, {d}, generator=g))
            W = torch.randn({n}, {d}, generator=g, dtype=torch.float32)
        """,
        call="coherence(W)",
    )
    assert 0.0 < mu < 1.0
    assert added < 1e9 * n / 200_000, added


@pytest.mark.parametrize("chunk", [257, 300, 1000])
@pytest.mark.parametrize("num", [257, 601])
def test_tiled_coherence_equals_dense_with_cpu_row_strips(num, chunk):
    # chunks that do not divide N, and one larger than N
    gen = torch.Generator().manual_seed(num + chunk)
    W = torch.randn(num, 5, generator=gen, dtype=torch.float64)
    for mode in ("lines", "sphere"):
        assert abs(coherence(W, mode=mode, chunk_size=chunk) - dense(W, mode)) <= 1e-14
        assert abs(coherence(W.float(), mode=mode, chunk_size=chunk) - dense(W.float(), mode)) <= (
            1e-14
        )
    rep = coherence_report(W, chunk_size=chunk, bins=100)
    assert rep.histogram[1].sum() == num * (num - 1) // 2
    assert abs(rep.coherence - dense(W, "lines")) <= 1e-14 and rep.num_pairs == 1


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1.0])
def test_float32_rows_far_from_unit_length_are_normalised_exactly(scale):
    # float32 norms of such rows overflow or underflow: the float64 normalisation takes over
    W = torch.randn(300, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    W32 = (W * scale).to(torch.float32)
    W64 = W32.double()
    W64 = W64 / torch.linalg.vector_norm(W64, dim=1, keepdim=True)  # (normalize clamps at 1e-12)
    assert coherence(W32) == pytest.approx(dense(W64, "lines"), abs=1e-15)


def test_a_tile_full_of_maximal_pairs_is_verified_whole():
    # the simplex: all 79,800 pairs of one tile sit at 1/(N-1), more than are checked one by one
    S = constructions.simplex(400).to(torch.float32)
    assert coherence(S) == pytest.approx(dense(S.double(), "lines"), abs=1e-15)
    assert coherence(S, mode="sphere") == pytest.approx(dense(S.double(), "sphere"), abs=1e-15)
