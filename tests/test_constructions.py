"""Closed-form frames attain their stated coherence, which equals the valid lower bound."""

from __future__ import annotations

import math

import pytest
import torch

from grassmann import coherence, constructions, known_optimal, lower_bound

CASES = [
    ("orthonormal", lambda: constructions.orthonormal(4, 7), "lines", 0.0),
    ("simplex_sphere", lambda: constructions.simplex(6), "sphere", -1 / 6),
    ("simplex_lines", lambda: constructions.simplex(6), "lines", 1 / 6),
    ("orthoplex", lambda: constructions.orthoplex(9, 5), "sphere", 0.0),
    ("paley6", lambda: constructions.paley_etf(6), "lines", 1 / math.sqrt(5)),
    ("paley10_q9", lambda: constructions.paley_etf(10), "lines", 1 / 3),
    ("paley14", lambda: constructions.paley_etf(14), "lines", 1 / math.sqrt(13)),
    ("paley26_q25", lambda: constructions.paley_etf(26), "lines", 1 / 5),
    ("paley82_q81", lambda: constructions.paley_etf(82), "lines", 1 / 9),
    ("paley126_q125", lambda: constructions.paley_etf(126), "lines", 1 / math.sqrt(125)),
    ("clebsch", constructions.clebsch_etf, "lines", 1 / 3),
    ("johnson", constructions.johnson_etf, "lines", 1 / 3),
    (
        "naimark_28_21",
        lambda: constructions.naimark_complement(constructions.johnson_etf()),
        "lines",
        1 / 9,
    ),
    ("icosahedron", constructions.icosahedron, "sphere", 1 / math.sqrt(5)),
    ("icosahedron_lines", lambda: constructions.icosahedron()[::2], "lines", 1 / math.sqrt(5)),
    ("polygon_sphere", lambda: constructions.polygon(7), "sphere", math.cos(2 * math.pi / 7)),
    ("polygon_lines", lambda: constructions.polygon(7, "lines"), "lines", math.cos(math.pi / 7)),
    ("e8", constructions.e8_roots, "sphere", 0.5),
    ("e8_lines", lambda: constructions.e8_roots("lines"), "lines", 0.5),
    ("d4_lines", lambda: constructions.root_system("D", 4, "lines"), "lines", 0.5),
    ("e6_lines", lambda: constructions.root_system("E", 6, "lines"), "lines", 0.5),
    ("e7_lines", lambda: constructions.root_system("E", 7, "lines"), "lines", 0.5),
    ("triangular8", lambda: constructions.triangular_lines(8), "lines", 1 / 3),
    ("triangular5", lambda: constructions.triangular_lines(5), "lines", 1 / 3),
]


@pytest.mark.parametrize(("name", "build", "mode", "mu"), CASES, ids=[c[0] for c in CASES])
def test_construction_attains_its_coherence_and_the_lower_bound(name, build, mode, mu):
    frame = build()
    assert frame.dtype == torch.float64
    assert torch.allclose(frame.norm(dim=1), torch.ones(len(frame), dtype=torch.float64))
    got = coherence(frame, mode=mode)
    assert abs(got - mu) <= 1e-12
    num, dim = frame.shape
    if not (mode == "lines" and num <= dim):
        assert abs(lower_bound(num, dim, mode).value - mu) <= 1e-12


@pytest.mark.parametrize(
    ("family", "rank", "count", "dim"),
    [("D", 3, 12, 3), ("D", 4, 24, 4), ("D", 5, 40, 5), ("E", 6, 72, 6), ("E", 7, 126, 7)]
    + [("E", 8, 240, 8)],
)
def test_root_systems_have_the_roots_and_inner_products_of_a_simply_laced_system(
    family, rank, count, dim
):
    roots = constructions.root_system(family, rank)
    assert roots.shape == (count, dim)
    gram = roots @ roots.T
    values = torch.unique(torch.round(gram * 2) / 2)
    assert set(values.tolist()) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert torch.allclose(gram, torch.round(gram * 2) / 2, atol=1e-14)
    half = count // 2  # the second half are the negatives; lines: the first half
    assert torch.equal(roots[half:], -roots[:half])
    lines = constructions.root_system(family, rank, "lines")
    assert torch.equal(lines, roots[:half])
    # the first two rows attain the coherence: any prefix of >= 2 rows keeps it
    assert abs(coherence(roots[:2], mode="sphere") - 0.5) < 1e-15
    assert torch.allclose(roots.T @ roots, count / dim * torch.eye(dim, dtype=roots.dtype))


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8])
def test_triangular_lines_are_equiangular(n):
    lines = constructions.triangular_lines(n)
    assert lines.shape == (n * (n - 1) // 2, min(n, 7))
    off = (lines @ lines.T).abs()[~torch.eye(len(lines), dtype=torch.bool)]
    assert (off - 1 / 3).abs().max() < 1e-14


def test_etfs_are_tight_and_equiangular():
    for frame in (constructions.paley_etf(26), constructions.clebsch_etf()):
        num, dim = frame.shape
        gram = frame @ frame.T
        off = gram[~torch.eye(num, dtype=torch.bool)].abs()
        assert (off.max() - off.min()).item() < 1e-12
        assert torch.allclose(frame.T @ frame, num / dim * torch.eye(dim, dtype=frame.dtype))


def test_dtype_and_device_keywords(device):
    frame = constructions.simplex(4, dtype=torch.float32, device=device)
    assert frame.dtype == torch.float32 and frame.device.type == device.type
    opt = known_optimal(12, 3, "sphere", dtype=torch.float32, device=device)
    assert opt is not None and opt.dtype == torch.float32 and opt.device.type == device.type


@pytest.mark.parametrize(
    ("num", "dim", "mode"),
    [
        (3, 8, "lines"),
        (9, 8, "lines"),
        (6, 3, "lines"),
        (10, 5, "lines"),
        (16, 6, "lines"),
        (16, 10, "lines"),
        (28, 7, "lines"),
        (28, 21, "lines"),
        (120, 8, "lines"),
        (5, 2, "lines"),
        (4, 2, "lines"),
        (3, 5, "sphere"),
        (6, 5, "sphere"),
        (9, 5, "sphere"),
        (10, 5, "sphere"),
        (12, 3, "sphere"),
        (240, 8, "sphere"),
        (9, 2, "sphere"),
        (2, 1, "sphere"),
        (3, 1, "sphere"),
    ],
)
def test_known_optimal_returns_frames_that_meet_the_bound(num, dim, mode):
    frame = known_optimal(num, dim, mode)
    assert frame is not None and frame.shape == (num, dim)
    assert abs(coherence(frame, mode=mode) - lower_bound(num, dim, mode).value) <= 1e-12


@pytest.mark.parametrize(
    ("num", "dim", "mode"),
    [(7, 3, "lines"), (100, 50, "lines"), (11, 5, "sphere"), (13, 3, "sphere"), (10, 4, "lines")],
)
def test_known_optimal_returns_none_when_nothing_is_known(num, dim, mode):
    assert known_optimal(num, dim, mode) is None


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="prime power = 1 \\(mod 4\\)"):
        constructions.paley_etf(8)  # 7 = 3 mod 4
    with pytest.raises(ValueError, match="prime power = 1 \\(mod 4\\)"):
        constructions.paley_etf(16)  # 15 is not a prime power
    with pytest.raises(ValueError, match="num must be <= 3"):
        constructions.orthonormal(4, 3)
    with pytest.raises(ValueError, match="num must be <= 6"):
        constructions.orthoplex(7, 3)
    with pytest.raises(ValueError, match="unit-norm tight frame"):
        constructions.naimark_complement(torch.randn(10, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="mode must be one of"):
        known_optimal(5, 3, "cube")
    with pytest.raises(ValueError, match="rank must be >= 6"):
        constructions.root_system("E", 5)
    with pytest.raises(ValueError, match="family must be one of 'D', 'E'"):
        constructions.root_system("A", 5)
    with pytest.raises(ValueError, match="n must be <= 8"):
        constructions.triangular_lines(9)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype.*torch.int64"):
        constructions.root_system("D", 4, dtype=torch.int64)


@pytest.mark.parametrize(
    ("system", "shape", "values"),
    [
        ("D6", (46, 6), {0.0, 1 / 3, 1 / 2, 1 / math.sqrt(3)}),
        ("E6", (63, 6), {0.0, 1 / 4, 1 / 2, math.sqrt(3 / 8)}),
        ("E7", (91, 7), {0.0, 1 / 3, 1 / 2, 1 / math.sqrt(3)}),
    ],
)
def test_roots_with_minuscule_weights_have_the_stated_inner_products(system, shape, values):
    lines = constructions.root_weight_lines(system)
    rank, count, mu = constructions.ROOT_WEIGHT_SYSTEMS[system]
    assert lines.shape == shape == (count, rank) and mu == max(values)
    gram = (lines @ lines.T).abs()
    off = gram[~torch.eye(count, dtype=torch.bool)]
    # every |cosine| is one of the stated values, each of them taken
    near = torch.stack([(off - v).abs() for v in values]).min(dim=0).values
    assert near.max() <= 1e-12
    for v in values:
        assert ((off - v).abs() <= 1e-12).any()
    assert abs(coherence(lines) - mu) <= 1e-14 and abs(coherence(lines[:2]) - mu) <= 1e-14
    roots = constructions.root_system("D" if system == "D6" else "E", rank, "lines")
    assert torch.linalg.matrix_rank(lines) == rank
    # the lines of the root system are among them, in the same coordinates
    match = ((roots @ lines.T).abs() - 1).abs() <= 1e-12
    assert (match.sum(dim=1) == 1).all() and match.any(dim=0).sum() == len(roots)
    points = constructions.root_weight_lines(system, "sphere", dtype=torch.float32)
    assert points.shape == (2 * count, rank) and points.dtype == torch.float32
    assert torch.equal(points[count:], -points[:count])
    with pytest.raises(ValueError, match="system"):
        constructions.root_weight_lines("E8")


def test_the_600_cell_has_the_inner_products_of_h4():
    points = constructions.six_hundred_cell()
    assert points.shape == (120, 4) and torch.equal(points[60:], -points[:60])
    assert torch.allclose(points.norm(dim=1), torch.ones(120, dtype=points.dtype))
    gram = points @ points.T
    off = gram[~torch.eye(120, dtype=torch.bool)]
    # 36, 72, 108, 144, 180 degrees, and 60, 90, 120
    angles = [math.cos(k * math.pi / 5) for k in range(1, 6)] + [0.5, 0.0, -0.5]
    cosines = torch.tensor(angles, dtype=torch.float64)
    assert (off[:, None] - cosines).abs().min(dim=1).values.max() <= 1e-15
    # every vertex has 12 neighbours at 36 degrees (the icosahedral vertex figure)
    assert ((gram - math.cos(math.pi / 5)).abs() <= 1e-12).sum(dim=1).eq(12).all()
    lines = constructions.six_hundred_cell("lines", dtype=torch.float32)
    assert lines.shape == (60, 4) and lines.dtype == torch.float32
    assert abs(coherence(lines[:2].double()) - math.cos(math.pi / 5)) <= 1e-7
