"""ebv_gen.generate_subspaces: Grassmannian packings, their bounds, the k = 1 case, files, heads."""

from __future__ import annotations

import json
import math

import geoopt
import numpy as np
import pytest
import torch

import grassmann
from ebv_gen import SubspaceResult, generate, generate_subspaces
from ebv_gen.cli import main
from ebv_gen.io import sidecar_path
from ebv_gen.subspaces import random_min_distance, to_bases
from grassmann import GrassmannHead
from grassmann.npyio import load_bases, validate_bases

# Packings that meet a Rankin bound, so they are optimal (Conway, Hardin and Sloane 1996):
# lines in R^3 (N = 3 orthonormal, 4 from the cube's diagonals, 6 from the icosahedron's),
# planes in R^4 on the simplex bound d_c^2 = N / (N - 1) and on the orthoplex bound d_c^2 = 1,
# planes in R^5 on the simplex bound (6 / 5) N / (N - 1).
MEETS_BOUND = [
    (3, 3, 1, 1.0),
    (4, 3, 1, 8 / 9),
    (6, 3, 1, 4 / 5),
    *[(num, 4, 2, num / (num - 1)) for num in range(3, 9)],
    (11, 4, 2, 1.0),
    (12, 4, 2, 1.0),
    *[(num, 5, 2, 1.2 * num / (num - 1)) for num in (4, 5, 6, 7)],
]


@pytest.mark.parametrize(("num", "n", "k", "d2"), MEETS_BOUND)
def test_reaches_the_rankin_bound_where_the_literature_attains_it(num, n, k, d2):
    res = generate_subspaces(num, n, k)
    assert res.bound == pytest.approx(math.sqrt(d2), abs=1e-12)
    assert res.min_distance**2 == pytest.approx(d2, abs=1e-6), res.report()
    assert res.gap == pytest.approx(0.0, abs=1e-6) and res.ratio == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("num", "dim", "mu2"), [(6, 3, 1 / 5), (16, 6, 1 / 9)])
def test_k1_agrees_with_the_vector_generator_in_lines_mode(num, dim, mu2):
    # both reach the known optimum coherence^2 = mu2 (the vector generator may get there from
    # a structured start, so the runs themselves differ)
    sub = generate_subspaces(num, dim, 1)
    vec = generate(num, dim, mode="lines", method="lse")
    assert sub.min_distance**2 == pytest.approx(1 - vec.coherence**2, abs=1e-6)
    assert sub.min_distance**2 == pytest.approx(1 - mu2, abs=1e-6)


def test_k1_packing_is_the_vector_search_in_lines_mode():
    # the same engine: with the same seed, steps and no structured start, the lines of a k = 1
    # packing are the vectors of the lines search, up to sign
    from ebv_gen.search import search

    def run():
        return search(
            20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
            device="cpu", restarts=8, steps=400, time_budget=None,
        )  # fmt: skip

    sub = generate_subspaces(20, 5, 1, steps=400, restarts=8)
    cos = (sub.bases[:, :, 0].double() * run().Z).sum(dim=1).abs()
    assert torch.allclose(cos, torch.ones(20, dtype=torch.float64), atol=1e-6)


def test_orthogonal_bound_when_the_subspaces_fit_side_by_side():
    # N k <= n: mutually orthogonal subspaces, d_c^2 = k, found at once.
    res = generate_subspaces(10, 64, 4)
    assert res.bound_name == "orthogonal" and res.bound == 2.0
    assert res.min_distance == pytest.approx(2.0, abs=1e-6)
    assert res.min_angle == pytest.approx(math.pi / 2, abs=1e-6)
    # k > n / 2: orthogonal complements; d_c^2 <= n - k and 2k - n angles vanish.
    res = generate_subspaces(3, 6, 4)
    assert res.bound_name == "orthogonal" and res.min_distance == pytest.approx(math.sqrt(2), 1e-6)
    assert res.min_angle < 1e-3
    bound = grassmann.subspace_lower_bound(5, 6, 4)
    assert bound.name == "rankin_simplex" and bound == grassmann.subspace_lower_bound(5, 6, 4)


def test_result_is_orthonormal_float32_and_verified_in_float64():
    res = generate_subspaces(40, 16, 3, seed=2, steps=300, restarts=8)
    assert isinstance(res, SubspaceResult)
    assert res.bases.dtype == torch.float32 and res.bases.shape == (40, 16, 3)
    assert (res.num, res.n, res.k) == (40, 16, 3)
    x = res.bases.double()
    assert float((x.mT @ x - torch.eye(3, dtype=torch.float64)).abs().max()) < 5e-7
    validate_bases(res.bases, atol=1e-6)
    ref = grassmann.subspace_coherence(res.bases)
    assert res.min_distance == ref.min_chordal_distance and res.min_angle == ref.min_angle
    bound = grassmann.subspace_lower_bound(40, 16, 3)
    assert (res.bound, res.bound_name) == (bound.value, bound.name)
    assert res.gap == pytest.approx(res.bound - res.min_distance)
    assert 0 < res.ratio <= 1 + 1e-9
    # the search beats Haar-random subspaces by a wide margin
    assert res.min_distance > 1.15 * random_min_distance(40, 16, 3, seed=2)
    # the history records the best distance so far: non-decreasing, ending at the result
    dists = [h[2] for h in res.history]
    assert all(b >= a - 1e-12 for a, b in zip(dists[:-1], dists[1:], strict=True))
    assert res.history[-1][0] == res.steps == 300
    assert dists[-1] == pytest.approx(res.min_distance, abs=1e-6)
    line = res.report()
    assert "\n" not in line and "Gr(16, 3)" in line and "rankin_simplex" in line


def test_same_seed_same_bytes_other_seed_differs_and_tiles_do_not_matter():
    a = generate_subspaces(30, 8, 2, seed=5, steps=80, restarts=8)
    b = generate_subspaces(30, 8, 2, seed=5, steps=80, restarts=8)
    c = generate_subspaces(30, 8, 2, seed=6, steps=80, restarts=8)
    assert a.bases.numpy().tobytes() == b.bases.numpy().tobytes()
    assert a.bases.numpy().tobytes() != c.bases.numpy().tobytes()
    # 3 subspaces per tile instead of all 30 in one: same optimisation up to rounding (the
    # exploration runs in float32, so up to float32's rounding over 80 steps)
    t = generate_subspaces(30, 8, 2, seed=5, steps=80, tile=6, restarts=8)
    assert t.min_distance == pytest.approx(a.min_distance, abs=1e-5)


def test_to_bases_is_the_row_layout_of_the_engine():
    z = torch.arange(2 * 3 * 5, dtype=torch.float64).view(1, 6, 5)
    x = to_bases(z, 3)
    assert x.shape == (1, 2, 5, 3)
    assert torch.equal(x[0, 1, :, 2], z[0, 5])


@pytest.mark.parametrize(
    ("kwargs", "exc", "needle"),
    [
        ({"num": 1}, ValueError, "num must be >= 2"),
        ({"num": 0}, ValueError, "num must be >= 1"),
        ({"k": 0}, ValueError, "k must be >= 1"),
        ({"k": 4}, ValueError, "k must be < n"),
        ({"k": 5}, ValueError, "k must be < n"),
        ({"n": 3.0}, TypeError, "n must be an integer"),
        ({"k": "2"}, TypeError, "k must be an integer"),
        ({"num": True}, TypeError, "num must be an integer"),
        ({"metric": "geodesic"}, ValueError, "metric must be one of 'chordal'"),
        ({"seed": -1}, ValueError, "seed"),
        ({"steps": -3}, ValueError, "steps"),
        ({"time_budget": float("nan")}, ValueError, "time_budget"),
        ({"dtype": torch.float16}, ValueError, "dtype"),
        ({"restarts": 0}, ValueError, "restarts"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"num": 10**6, "n": 10**5, "k": 64}, ValueError, "GiB"),
    ],
)
def test_bad_input_names_the_argument(kwargs, exc, needle):
    args = {"num": 5, "n": 4, "k": 2, **kwargs}
    num, n, k = args.pop("num"), args.pop("n"), args.pop("k")
    with pytest.raises(exc, match=needle):
        generate_subspaces(num, n, k, **args)


@pytest.mark.parametrize(
    ("num", "exact"),
    [(130, True), (30, False)],  # one run (N k n > 2048): exact resume; multi-start: by round
)
def test_interrupt_checkpoint_and_resume(tmp_path, num, exact):
    ckpt = tmp_path / "p.ckpt.pt"
    calls = []

    def stop_after_40() -> bool:
        calls.append(1)
        return len(calls) > 40

    first = generate_subspaces(
        num, 8, 2, steps=120, checkpoint_path=ckpt, checkpoint_every=1e9, should_stop=stop_after_40
    )
    # polled between steps and between tiles: the run stops part-way, wherever that is
    assert first.interrupted and 0 < first.steps < 120 and ckpt.exists()
    with pytest.raises(ValueError, match="cannot resume .* k=2, this run has k=3"):
        generate_subspaces(num, 8, 3, steps=120, checkpoint_path=ckpt, resume=True)
    done = generate_subspaces(num, 8, 2, steps=120, checkpoint_path=ckpt, resume=True)
    assert not done.interrupted and done.steps == 120
    assert done.extra["resumed_from_step"] == first.steps and not ckpt.exists()
    assert done.min_distance >= first.min_distance - 1e-6  # nothing of the first part is lost
    if exact:
        whole = generate_subspaces(num, 8, 2, steps=120)
        assert done.min_distance == pytest.approx(whole.min_distance, abs=1e-9)


def test_save_writes_npy_and_sidecar_that_heads_and_verify_accept(tmp_path):
    res = generate_subspaces(12, 6, 2, steps=100)
    path = tmp_path / "planes.npy"
    digest = res.save(path)
    side = json.loads(sidecar_path(path).read_text())
    for key in (
        "kind", "num", "n", "k", "metric", "min_distance", "min_angle_rad", "bound", "bound_name",
        "gap", "ratio", "seed", "steps", "seconds", "device", "sha256", "version", "history",
        "shape", "interrupted", "restarts", "dtype",
    ):  # fmt: skip
        assert key in side, key
    assert side["kind"] == "subspaces" and side["sha256"] == digest
    assert side["shape"] == [12, 6, 2] and side["min_distance"] == res.min_distance
    assert torch.equal(load_bases(path), res.bases)
    assert main(["verify", str(path)]) == 0


# ----------------------------------------------------------------------------- heads


def test_cli_packing_file_initialises_a_trainable_grassmann_head(tmp_path, capsys):
    path = tmp_path / "gcr.npy"
    assert (
        main(["generate-subspaces", "10", "16", "3", "-o", str(path), "--quiet", "--steps", "200"])
        == 0
    )
    capsys.readouterr()
    bases = torch.from_numpy(np.load(path))
    head = GrassmannHead(16, 10, 3, init=path)
    assert isinstance(head.subspaces, geoopt.ManifoldParameter)
    assert torch.equal(head.subspaces.detach(), bases)
    assert torch.equal(GrassmannHead(16, 10, 3, init=bases).subspaces.detach(), bases)
    opt = geoopt.optim.RiemannianSGD(head.parameters(), lr=0.5)
    loss = torch.nn.functional.cross_entropy(head(torch.randn(32, 16)), torch.arange(32) % 10)
    loss.backward()
    opt.step()
    moved = head.subspaces.detach()
    assert not torch.equal(moved, bases)
    eye = torch.eye(3, dtype=torch.float64)
    assert float((moved.double().mT @ moved.double() - eye).abs().max()) < 1e-5


def test_fixed_grassmann_head_keeps_the_packing_under_an_optimiser_step(tmp_path):
    res = generate_subspaces(10, 16, 3, steps=50)
    path = tmp_path / "fixed.npy"
    res.save(path)
    head = GrassmannHead(16, 10, 3, init=str(path), trainable=False)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), head)
    assert all(p is not head.subspaces for p in model.parameters())
    assert "1.subspaces" in model.state_dict()
    before = model[0].weight.detach().clone()
    opt = geoopt.optim.RiemannianSGD(model.parameters(), lr=0.5, momentum=0.9)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(32, 8)), torch.arange(32) % 10)
    loss.backward()
    opt.step()
    assert torch.equal(head.subspaces, res.bases)
    assert not torch.equal(model[0].weight, before)  # the rest of the model did train
