"""Bounds against hand-computed values, validity ranges, and known optimal packings."""

from __future__ import annotations

import math

import pytest

from grassmann import Bound, bounds, lower_bound, subspace_lower_bound


def test_welch_hand_values():
    assert bounds.welch(6, 3).value == pytest.approx(1 / math.sqrt(5), abs=1e-15)
    assert bounds.welch(28, 7).value == pytest.approx(1 / 3, abs=1e-15)
    assert bounds.welch(16, 6).value == pytest.approx(1 / 3, abs=1e-15)
    assert bounds.welch(4, 3).value == pytest.approx(1 / 3, abs=1e-15)  # simplex, N = d + 1


def test_orthoplex_and_levenstein_hand_values():
    assert bounds.gerzon_limit(8) == 36
    assert bounds.orthoplex(37, 8).value == pytest.approx(1 / math.sqrt(8), abs=1e-15)
    # (3*120 - 80) / (10 * 112) = 1/4  -> 1/2 (the 120 E8 lines)
    assert bounds.levenstein(120, 8).value == pytest.approx(0.5, abs=1e-15)
    # Levenstein equals Welch at the Gerzon limit: 1/(d+2)
    d = 5
    g = bounds.gerzon_limit(d)
    assert bounds.welch(g, d).value ** 2 == pytest.approx(1 / (d + 2), abs=1e-15)


def test_lower_bound_lines_picks_the_largest_valid_one():
    b = lower_bound(3, 5)
    assert (b.value, b.name, b.attainable) == (0.0, "orthonormal", True)
    assert lower_bound(28, 7).name == "welch"
    assert lower_bound(120, 8).name == "levenstein"
    assert lower_bound(37, 8).name == "orthoplex"  # just above Gerzon orthoplex is larger
    for num in (9, 20, 36, 37, 100, 1000, 10**6):
        b = lower_bound(num, 8)
        valid = [bounds.welch(num, 8).value]
        if num > 36:
            valid += [bounds.orthoplex(num, 8).value, bounds.levenstein(num, 8).value]
        assert b.value == max(valid)
    assert lower_bound(7, 2).name == "planar"
    assert lower_bound(7, 2).value == pytest.approx(math.cos(math.pi / 7), abs=1e-15)


def test_sphere_bounds_hand_values():
    assert bounds.simplex_bound(4, 3).value == pytest.approx(-1 / 3, abs=1e-15)
    assert lower_bound(4, 3, "sphere").name == "simplex"
    assert lower_bound(5, 3, "sphere").value == 0.0
    assert lower_bound(6, 3, "sphere").value == 0.0
    # icosahedron: Fejes Toth and Levenshtein both give 1/sqrt(5) for 12 points on S^2
    assert bounds.fejes_toth(12).value == pytest.approx(1 / math.sqrt(5), abs=1e-15)
    assert bounds.sphere_levenstein(12, 3).value == pytest.approx(1 / math.sqrt(5), abs=1e-14)
    assert lower_bound(12, 3, "sphere").value == pytest.approx(1 / math.sqrt(5), abs=1e-14)


@pytest.mark.parametrize(
    ("num", "dim", "value"),
    [
        (240, 8, 0.5),  # E8 kissing configuration (sharp)
        (196560, 24, 0.5),  # Leech lattice minimal vectors (sharp)
        (12, 3, 1 / math.sqrt(5)),  # icosahedron (sharp)
        (7, 2, math.cos(2 * math.pi / 7)),  # regular polygons (sharp)
        (10, 2, math.cos(2 * math.pi / 10)),
    ],
)
def test_sphere_levenstein_equals_sharp_configurations(num, dim, value):
    assert bounds.sphere_levenstein(num, dim).value == pytest.approx(value, abs=1e-13)


@pytest.mark.parametrize(
    ("num", "dim", "best_known"),
    [
        (13, 3, 0.5427),  # Tammes N = 13: 57.14 degrees (best known, proven)
        (24, 3, 0.7434),  # snub cube, 43.69 degrees
        (120, 4, (1 + math.sqrt(5)) / 4),  # 600-cell
        (24, 4, 0.5),  # 24-cell
    ],
)
def test_sphere_bounds_never_exceed_known_packings(num, dim, best_known):
    assert lower_bound(num, dim, "sphere").value <= best_known


def test_levenshtein_function_is_continuous_and_increasing():
    for n in (2, 3, 5, 8, 24):
        previous = 0.0
        for m in range(1, 12):
            lo, hi = bounds._lev_interval(m, n)
            nxt_lo, _ = bounds._lev_interval(m + 1, n)
            assert hi == pytest.approx(nxt_lo, abs=1e-14)
            left, right = bounds._lev_piece(m, n, lo), bounds._lev_piece(m, n, hi)
            assert right == pytest.approx(bounds._lev_piece(m + 1, n, nxt_lo), rel=1e-9)
            assert left >= previous - 1e-9 and right >= left
            previous = right


def test_subspace_bounds_hand_values():
    # Gr(4, 2): k(n-k)/n = 1; simplex N/(N-1)
    assert bounds.rankin_simplex(3, 4, 2).value == pytest.approx(math.sqrt(1.5), abs=1e-15)
    assert bounds.rankin_orthoplex(11, 4, 2).value == pytest.approx(1.0, abs=1e-15)
    assert subspace_lower_bound(10, 4, 2).name == "rankin_simplex"
    assert subspace_lower_bound(11, 4, 2).name == "rankin_orthoplex"
    # k = 1: Rankin simplex is Welch: d_c^2 = 1 - mu^2
    dc = subspace_lower_bound(6, 3, 1).value
    assert 1 - dc**2 == pytest.approx(bounds.welch(6, 3).value ** 2, abs=1e-15)


def test_subspace_bound_for_lines_uses_the_lines_bound():
    # review finding: Rankin alone is weaker than Levenstein / planar for k = 1
    for num, n in [(10, 3), (120, 8), (5, 2), (40, 5)]:
        mu = lower_bound(num, n, "lines")
        got = subspace_lower_bound(num, n, 1)
        assert got.value == pytest.approx(math.sqrt(1 - mu.value**2), abs=1e-15)
        assert got.name == f"lines:{mu.name}"
        assert got.value <= bounds.rankin_simplex(num, n, 1).value + 1e-15
    # complements keep chordal distances: Gr(n, n - 1) has the bound of Gr(n, 1)
    assert subspace_lower_bound(10, 3, 2).value == subspace_lower_bound(10, 3, 1).value


def test_subspace_bound_never_exceeds_the_largest_possible_distance():
    # d_c^2 <= min(k, n - k); two lines in R^3 are at most orthogonal
    assert subspace_lower_bound(2, 3, 1) == subspace_lower_bound(2, 3, 1)
    assert subspace_lower_bound(2, 3, 1).value == pytest.approx(1.0, abs=1e-15)
    assert subspace_lower_bound(2, 3, 1).name == "orthogonal"
    for num in range(2, 30):
        for n in range(2, 7):
            for k in range(1, n):
                assert subspace_lower_bound(num, n, k).value <= math.sqrt(min(k, n - k)) + 1e-15


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bounds.welch(3, 3), "welch bound needs num > dim"),
        (lambda: bounds.orthoplex(36, 8), "orthoplex bound needs num > dim"),
        (lambda: bounds.levenstein(10, 4), "levenstein bound needs num > dim"),
        (lambda: bounds.sphere_orthoplex(4, 3), "num >= dim \\+ 2"),
        (lambda: bounds.sphere_levenstein(5, 1), "dim >= 2"),
        (lambda: bounds.fejes_toth(12, 4), "dim=3 only"),
        (lambda: bounds.rankin_orthoplex(10, 4, 2), "num > n \\(n \\+ 1\\) / 2 = 10"),
        (lambda: bounds.rankin_simplex(5, 4, 4), "k must be <= 3"),
        (lambda: lower_bound(1, 3), "num must be >= 2"),
        (lambda: lower_bound(5, 3, "circle"), "mode must be one of"),
    ],
)
def test_invalid_ranges_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bound_is_frozen():
    b = Bound(0.5, "x")
    with pytest.raises(AttributeError):
        b.value = 0.1  # type: ignore[misc]
