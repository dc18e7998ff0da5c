"""The tiled optimiser engine of ebv_gen.optimize: gradient, pooling, memory, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from ebv_gen.optimize import (
    best_threshold,
    max_similarity,
    minimize_coherence,
    project,
    random_start,
    retract,
    surrogate_grad,
    threshold_descent,
)
from tests._memory import peak_rss_added


def _dense_similarity(Z: torch.Tensor, block: int, mode: str) -> torch.Tensor:
    """(R, N, N) pairwise similarities from the dense formula ||Z_i Z_j^T||_F^2 / <z_i, z_j>."""
    R, M, d = Z.shape
    Zb = Z.view(R, M // block, block, d)
    if mode == "sphere":
        return Z @ Z.transpose(1, 2)
    cross = torch.einsum("riad,rjbd->rijab", Zb, Zb)
    return (cross**2).sum(dim=(-1, -2))


def _dense_surrogate(Z, t, shift, block, mode):
    s = _dense_similarity(Z, block, mode)
    n = s.shape[1]
    iu = torch.triu_indices(n, n, offset=1)
    pairs = s[:, iu[0], iu[1]]
    return shift + torch.logsumexp(t[:, None] * (pairs - shift[:, None]), dim=1) / t


@pytest.mark.parametrize(
    ("num", "dim", "block", "mode", "tile"),
    [
        (13, 5, 1, "lines", 4),
        (13, 5, 1, "sphere", 5),
        (11, 4, 1, "lines", 100),
        (7, 6, 2, "lines", 6),  # 3 blocks per tile, 7 blocks: tiles do not divide N
        (5, 7, 3, "lines", 7),
    ],
)
def test_tiled_gradient_equals_dense_autograd(num, dim, block, mode, tile):
    g = torch.Generator().manual_seed(1)
    Z = random_start(2, num, dim, block=block, dtype=torch.float64, generator=g)
    t = torch.tensor([3.0, 40.0], dtype=torch.float64)
    smax_dense = _dense_similarity(Z, block, mode)
    n = smax_dense.shape[1]
    mask = torch.eye(n, dtype=torch.bool).expand_as(smax_dense)
    smax_dense = smax_dense.masked_fill(mask, -math.inf).amax(dim=(1, 2))
    shift = smax_dense - 0.01  # a stale shift, as the optimiser uses (previous step's max)
    value, grad, smax = surrogate_grad(Z, t, shift, block=block, mode=mode, tile=tile)
    Zr = Z.clone().requires_grad_(True)
    dense = _dense_surrogate(Zr, t, shift, block, mode)
    (gd,) = torch.autograd.grad(dense.sum(), Zr)
    torch.testing.assert_close(value, dense.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, gd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(smax, smax_dense, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("block", "mode", "tile"), [(1, "lines", 4), (1, "sphere", 100), (2, "lines", 6)]
)
def test_transposed_and_plain_gradient_layouts_agree(block, mode, tile, monkeypatch):
    # batches on a CPU sum the gradient transposed (faster products); one packing, or the
    # flag off, sums it as it is: both give the same contiguous gradient, to rounding
    import ebv_gen.kernels as kernels

    g = torch.Generator().manual_seed(4)
    Z = random_start(
        kernels._TRANSPOSED_BATCH, 11, 5, block=block, dtype=torch.float64, generator=g
    )
    t = torch.logspace(0, 3, kernels._TRANSPOSED_BATCH, dtype=torch.float64)
    shift = max_similarity(Z, block=block, mode=mode)
    batched = surrogate_grad(Z, t, shift, block=block, mode=mode, tile=tile)
    assert batched[1].is_contiguous()
    monkeypatch.setattr(kernels, "_TRANSPOSED_GRADIENT", False)
    plain = surrogate_grad(Z, t, shift, block=block, mode=mode, tile=tile)
    single = surrogate_grad(Z[1:2], t[1:2], shift[1:2], block=block, mode=mode, tile=tile)
    for a, b in zip(batched, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(single[1][0], batched[1][1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("block", "mode"), [(1, "lines"), (1, "sphere"), (2, "lines")])
def test_workspace_reuse_across_calls_and_tile_sizes_gives_identical_results(block, mode):
    g = torch.Generator().manual_seed(10)
    Z1 = random_start(2, 9, 6, block=block, dtype=torch.float64, generator=g)
    Z2 = random_start(2, 9, 6, block=block, dtype=torch.float64, generator=g)
    t = torch.tensor([5.0, 30.0], dtype=torch.float64)
    shift = torch.tensor([0.2, 0.3], dtype=torch.float64)
    ws: dict = {}
    for Z, tile in ((Z1, 2 * block), (Z2, 100), (Z1, 4 * block)):
        fresh = surrogate_grad(Z, t, shift, block=block, mode=mode, tile=tile)
        reused = surrogate_grad(Z, t, shift, block=block, mode=mode, tile=tile, workspace=ws)
        for a, b in zip(fresh, reused, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_pooled_max_similarity_equals_frobenius_formula(block):
    g = torch.Generator().manual_seed(2)
    Z = random_start(3, 9, 8, block=block, dtype=torch.float64, generator=g)
    dense = _dense_similarity(Z, block, "lines")
    dense = dense.masked_fill(torch.eye(9, dtype=torch.bool), -math.inf).amax(dim=(1, 2))
    for tile in (block, 2 * block, 5 * block, 100):
        torch.testing.assert_close(max_similarity(Z, block=block, tile=tile), dense)


def test_retract_gives_orthonormal_blocks_and_project_is_tangent():
    g = torch.Generator().manual_seed(3)
    Z = random_start(2, 5, 7, block=3, dtype=torch.float64, generator=g)
    Zb = Z.view(2, 5, 3, 7)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(Zb @ Zb.transpose(-1, -2), eye.expand(2, 5, 3, 3))
    U = torch.randn(Z.shape, generator=g, dtype=torch.float64)
    P = project(Z, U, 3).view(2, 5, 3, 7)
    torch.testing.assert_close(
        P @ Zb.transpose(-1, -2), torch.zeros(2, 5, 3, 3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    Y = retract(Z + 0.3 * U, 3).view(2, 5, 3, 7)
    torch.testing.assert_close(Y @ Y.transpose(-1, -2), eye.expand(2, 5, 3, 3))


def test_optimizer_decreases_subspace_coherence_and_respects_rankin_bound():
    # 3 planes in R^4: Rankin simplex bound d_c^2 <= k (n - k) / n * N / (N - 1) = 1.5,
    # so s = k - d_c^2 >= 0.5 (attained: Conway, Hardin, Sloane 1996).
    g = torch.Generator().manual_seed(4)
    Z0 = random_start(4, 3, 4, block=2, dtype=torch.float64, generator=g)
    start = float(max_similarity(Z0, block=2).min())
    res = minimize_coherence(Z0, block=2, steps=600)
    Zb = res.Z.view(3, 2, 4)
    torch.testing.assert_close(
        Zb @ Zb.transpose(-1, -2), torch.eye(2, dtype=torch.float64).expand(3, 2, 2)
    )
    assert res.similarity < start
    assert res.similarity >= 0.5 - 1e-9
    assert res.similarity == pytest.approx(0.5, abs=1e-4)


def test_resume_from_snapshot_reproduces_uninterrupted_run():
    g = torch.Generator().manual_seed(5)
    Z0 = random_start(2, 9, 4, dtype=torch.float64, generator=g)
    full = minimize_coherence(Z0, steps=80)
    snaps = []
    minimize_coherence(
        Z0,
        steps=80,
        checkpoint=snaps.append,
        checkpoint_every=1e-9,
        should_stop=lambda: len(snaps) >= 30,
    )
    state = snaps[29]
    assert state["step"] == 30
    resumed = minimize_coherence(Z0, steps=80, state=state)
    assert resumed.steps == 80
    assert torch.equal(resumed.Z, full.Z)
    assert resumed.similarity == full.similarity


def test_should_stop_interrupts_and_returns_best_so_far():
    g = torch.Generator().manual_seed(6)
    Z0 = random_start(1, 20, 5, dtype=torch.float64, generator=g)
    calls = []
    res = minimize_coherence(
        Z0, steps=10_000, should_stop=lambda: len(calls) > 5, callback=lambda *a: calls.append(a)
    )
    assert res.interrupted
    assert res.steps == 6
    assert res.similarity <= float(max_similarity(Z0)[0])


def test_extreme_sharpness_stays_finite():
    # a huge beta makes t (max - shift) leave the safe window: the pass is redone, never NaN
    g = torch.Generator().manual_seed(7)
    Z0 = random_start(1, 30, 4, dtype=torch.float32, generator=g)
    res = minimize_coherence(Z0, steps=50, beta=(1e6, 1e8), lr=(0.2, 0.1))
    assert math.isfinite(res.similarity)
    assert torch.isfinite(res.Z).all()


def test_a_starting_sharpness_per_packing_runs_each_as_if_alone():
    g = torch.Generator().manual_seed(9)
    Z0 = random_start(3, 12, 4, dtype=torch.float64, generator=g)
    starts = [0.05, 0.5, 50.0]
    both = minimize_coherence(Z0, steps=60, beta=(torch.tensor(starts), 2e3))
    for r, b0 in enumerate(starts):
        alone = minimize_coherence(Z0[r : r + 1], steps=60, beta=(b0, 2e3))
        torch.testing.assert_close(both.restart_Z[r], alone.restart_Z[0])
        assert math.isclose(both.restart_similarity[r], alone.restart_similarity[0], rel_tol=1e-7)
    # the schedules differ: the three packings do not end alike
    assert len({round(v, 9) for v in both.restart_similarity}) == 3


@pytest.mark.parametrize("block", [1, 2])
def test_narrowing_keeps_the_best_starts_on_their_own_course_and_the_others_where_they_were(block):
    from ebv_gen.kernels import max_similarity as exact

    g = torch.Generator().manual_seed(11)
    Z0 = random_start(8, 10, 5, block=block, dtype=torch.float64, generator=g)
    starts = torch.linspace(0.1, 5.0, 8, dtype=torch.float64)
    plain = minimize_coherence(Z0, steps=60, block=block, beta=(starts, 2e3))
    snaps = []  # the plain run's state after each step: its best maxima at steps 30 and 45
    minimize_coherence(
        Z0, steps=60, block=block, beta=(starts, 2e3), checkpoint=snaps.append,
        checkpoint_every=1e-9, should_stop=lambda: len(snaps) >= 45,
    )  # fmt: skip
    at30, at45 = snaps[29], snaps[44]
    assert (at30["step"], at45["step"]) == (30, 45)
    cut = minimize_coherence(
        Z0, steps=60, block=block, beta=(starts, 2e3), narrow=[(0.5, 0.5), (0.75, 0.3)]
    )
    assert len(cut.restart_similarity) == 8 and cut.restart_Z.shape == Z0.shape
    # at step 30 the best four (by their best maxima so far) go on, then ceil(0.3 * 4) = 2 of
    # those at step 45; every packing runs as if alone, so each stops where the plain run was
    # and the two last end as in the plain run (to rounding: a batch of fewer packings may
    # round its products differently)
    four = sorted(range(8), key=lambda r: (at30["best"][r], r))[:4]
    two = sorted(four, key=lambda r: (at45["best"][r], r))[:2]
    for r in range(8):
        stopped = at30 if r not in four else at45 if r not in two else None
        if stopped is not None:
            assert cut.restart_similarity[r] == pytest.approx(stopped["best"][r], abs=1e-13)
            torch.testing.assert_close(cut.restart_Z[r], stopped["best_Z"][r])
    for r in two:
        torch.testing.assert_close(cut.restart_Z[r], plain.restart_Z[r])
    # the six stopped early end worse than they would have (else nothing was cut)
    assert all(cut.restart_similarity[r] > plain.restart_similarity[r] for r in range(8)
               if r not in two)  # fmt: skip
    # every reported similarity is the exact maximum of the iterate kept for it
    torch.testing.assert_close(
        exact(cut.restart_Z, block=block),
        torch.tensor(cut.restart_similarity, dtype=torch.float64),
    )
    assert cut.similarity == min(cut.restart_similarity)


def test_a_run_resumed_after_narrowing_reproduces_the_uninterrupted_one():
    g = torch.Generator().manual_seed(12)
    Z0 = random_start(6, 9, 4, dtype=torch.float64, generator=g)
    # a start of beta per packing: after a resume each active packing keeps its own
    starts = torch.linspace(0.2, 2.0, 6, dtype=torch.float64)
    kw = {"steps": 80, "narrow": [(0.25, 0.5), (0.6, 0.5)], "beta": (starts, 2e3)}
    full = minimize_coherence(Z0, **kw)
    snaps = []
    minimize_coherence(
        Z0, **kw, checkpoint=snaps.append, checkpoint_every=1e-9,
        should_stop=lambda: len(snaps) >= 40,
    )  # fmt: skip
    state = snaps[39]
    assert state["step"] == 40 and len(state["active"]) == 3 and state["narrowed"] == 1
    resumed = minimize_coherence(Z0, **kw, state=state)
    assert resumed.restart_similarity == full.restart_similarity
    assert torch.equal(resumed.restart_Z, full.restart_Z)
    # a damaged state (its active packings not fitting its iterates) is refused
    from ebv_gen.optimize import CoherenceAdam

    for bad in ([0, 1], [2, 1, 0], [0, 1, 9]):
        with pytest.raises(ValueError, match="active packings"):
            CoherenceAdam(Z0).load_state_dict({**state, "active": bad})


def test_the_count_kept_is_the_ceiling_of_the_exact_share():
    # 0.07 * 100 is 7.000000000000001 in floating point: 7 go on, not 8
    Z0 = random_start(100, 4, 3, generator=torch.Generator().manual_seed(0))
    snaps = []
    minimize_coherence(
        Z0, steps=4, narrow=[(0.5, 0.07)], checkpoint=snaps.append, checkpoint_every=1e-9
    )
    assert len(snaps[-1]["active"]) == 7


@pytest.mark.parametrize(
    ("narrow", "err"),
    [
        ([(0.5, 0.0)], ValueError),
        ([(0.0, 0.5)], ValueError),
        ([(1.0, 0.5)], ValueError),
        ([(0.6, 0.5), (0.4, 0.5)], ValueError),
        ([(0.5, 1.5)], ValueError),
        ([0.5], TypeError),
        (0.5, TypeError),
        ([(0.5, True)], TypeError),
        ([("0.5", 0.5)], TypeError),
    ],
)
def test_bad_narrowing_is_refused_naming_narrow(narrow, err):
    Z0 = random_start(2, 6, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(err, match="narrow"):
        minimize_coherence(Z0, steps=5, narrow=narrow)


def test_any_real_number_is_a_sharpness():
    import numpy as np

    Z0 = random_start(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    want = minimize_coherence(Z0, steps=5, beta=(0.5, 2e3)).restart_similarity
    for beta in [(np.float32(0.5), np.float32(2e3)), (torch.tensor(0.5), 2000), [0.5, 2e3],
                 (np.array([0.5, 0.5]), 2e3), np.array([0.5, 2e3])]:  # fmt: skip
        got = minimize_coherence(Z0, steps=5, beta=beta).restart_similarity
        assert got == pytest.approx(want, rel=1e-12), beta


@pytest.mark.parametrize(
    ("beta", "err", "match"),
    [
        ((torch.tensor([1.0, 2.0]), 2e3), ValueError, r"beta's start .* 3 numbers .*\(2,\)"),
        (([1.0, -2.0, 3.0], 2e3), ValueError, "beta's start must be positive and finite"),
        ((0.0, 2e3), ValueError, "beta's start must be a positive finite number, got 0.0"),
        ((True, 2e3), ValueError, "beta's start must be a positive finite number, got True"),
        ((0.5, math.inf), ValueError, "beta's end must be a positive finite number, got inf"),
        ((0.5,), TypeError, r"beta must be a pair \(start, end\)"),
        ((object(), 2e3), TypeError, "beta's start must be a number or one number per packing"),
    ],
)
def test_bad_sharpness_is_refused_naming_beta(beta, err, match):
    Z0 = random_start(3, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(err, match=match):
        minimize_coherence(Z0, steps=1, beta=beta)


def test_threshold_descent_tiled_matches_untiled_and_stops_at_threshold():
    g = torch.Generator().manual_seed(8)
    W0 = random_start(1, 10, 5, dtype=torch.float64, generator=g)[0]
    a = threshold_descent(W0, 0.6, lr=0.05, steps=500, tile=3)
    b = threshold_descent(W0, 0.6, lr=0.05, steps=500, tile=1000)
    assert a.reached and b.reached
    assert a.steps == b.steps
    torch.testing.assert_close(a.Z, b.Z)
    assert a.coherence <= 0.6
    G = a.Z @ a.Z.T
    assert float((G - torch.eye(10, dtype=G.dtype)).abs().max()) == pytest.approx(a.coherence)


def test_threshold_descent_tolerance_and_patience():
    g = torch.Generator().manual_seed(8)
    W0 = random_start(1, 10, 5, dtype=torch.float64, generator=g)[0]
    # 10 lines in R^5 cannot go below 1/3 (Welch): the run stalls instead of using its budget
    res = threshold_descent(W0, 0.2, lr=0.05, steps=5000, patience=30)
    assert res.stalled and not res.reached
    assert res.steps < 5000
    assert res.threshold == 0.2
    # stopping within the tolerance, as the published script does (threshold + 1e-4)
    strict = threshold_descent(W0, 0.6, lr=0.05, steps=500)
    loose = threshold_descent(W0, 0.6, lr=0.05, steps=500, tolerance=0.05)
    assert loose.reached and loose.steps <= strict.steps
    assert loose.coherence <= 0.65


def test_best_threshold_bisects_to_a_reachable_threshold():
    g = torch.Generator().manual_seed(9)
    W0 = random_start(1, 10, 5, dtype=torch.float64, generator=g)[0]
    trials = []
    thr, run = best_threshold(
        W0, time_budget=2.0, low=1 / 3, high=0.9, rounds=5, lr=0.05, trials=trials
    )
    assert run is not None and run.reached
    assert 1 / 3 <= thr < 0.9
    assert run.coherence <= thr + 1e-4
    assert 1 <= len(trials) <= 5 and any(r is run for r in trials)
    assert min(r.coherence for r in trials) <= run.coherence


@pytest.mark.slow
def test_no_quadratic_memory_for_large_n():
    """N = 20000, d = 16: a Gram matrix would need N^2 * 4 = 1.6 GB; one step must not.

    What the call adds to the peak resident memory of a fresh process (tests/_memory.py),
    independent of what the test runner holds: O(N d + tile^2) plus the allocator's slack,
    measured 14-71 MB over eight runs (2 threads).
    """
    added, steps = peak_rss_added(
        setup="""
            import torch
            from ebv_gen.optimize import minimize_coherence, random_start
            g = torch.Generator().manual_seed(0)
            minimize_coherence(random_start(1, 2048, 16, generator=g), steps=1, tile=1024)
            Z0 = random_start(1, 20000, 16, generator=g)
        """,
        call="minimize_coherence(Z0, steps=1, tile=1024).steps",
    )
    assert steps == 1
    n2 = 20000**2 * 4
    assert added < 0.1 * n2, added  # 160 MB, a tenth of one Gram matrix


def test_optimizer_state_dict_round_trip_and_old_format_refused():
    from ebv_gen.optimize import CoherenceAdam

    Z0 = random_start(2, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = CoherenceAdam(Z0)
    for i in range(5):
        a.step(i / 10)
    b = CoherenceAdam(Z0)
    b.load_state_dict(a.state_dict())
    for i in range(5, 10):
        a.step(i / 10)
        b.step(i / 10)
    assert torch.equal(a.state["Z"], b.state["Z"]) and a.state["best"] == b.state["best"]
    old = {k: v for k, v in a.state_dict().items() if k != "format"}
    with pytest.raises(ValueError, match="older version"):
        b.load_state_dict(old)
    # the format before narrowing (no active/narrowed) is read as every packing active
    two = {k: v for k, v in a.state_dict().items() if k not in ("active", "narrowed")}
    c = CoherenceAdam(Z0)
    c.load_state_dict({**two, "format": "ebv_gen.CoherenceAdam/2"})
    assert c.state["active"] == [0, 1] and c.state["narrowed"] == 0
    a.step(0.95)
    c.step(0.95)
    assert torch.equal(a.state["Z"], c.state["Z"])
    with pytest.raises(ValueError, match="shape"):
        CoherenceAdam(Z0[:1]).load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((256, 10, 3), 1), ((256, 62, 5), 2), ((40, 400, 16), 4), ((62, 5), 1)],
    ids=["tiny", "small", "large", "one-packing"],
)
def test_cpu_runs_get_one_thread_tiny_at_most_two_small_and_all_large(shape, expected):
    from ebv_gen.optimize import _cpu_threads_for

    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with _cpu_threads_for(torch.empty(shape)):
            assert torch.get_num_threads() == expected
        assert torch.get_num_threads() == 4  # restored
    finally:
        torch.set_num_threads(old)


def test_the_thread_probe_goes_on_with_the_faster_and_probes_again_later(monkeypatch):
    import types

    import ebv_gen.optimize as op

    clock = [0.0]
    monkeypatch.setattr(op, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    cost = {2: 0.02, 1: 0.0025}  # a loaded machine: two threads wait for each other

    def steps(count):
        used = []
        for _ in range(count):
            probe.before(clock[0])
            used.append(torch.get_num_threads())
            clock[0] += cost[torch.get_num_threads()]
            probe.after(clock[0])
        return used

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        probe = op._ThreadProbe(2)
        first = steps(2 * op._PROBE_STEPS + 10)
        assert first[: 2 * op._PROBE_STEPS] == [2] * op._PROBE_STEPS + [1] * op._PROBE_STEPS
        assert probe.chosen == 1 and set(first[2 * op._PROBE_STEPS :]) == {1}
        cost.update({2: 0.001})  # the load is gone: the next probe, after _PROBE_EVERY s
        later = steps(int(op._PROBE_EVERY / cost[1]) + 2 * op._PROBE_STEPS + 10)
        assert probe.chosen == 2 and later[-1] == 2
        # after narrowing the batch is another: a probe starts at once, midway ones dropped
        probe.next_probe = clock[0]
        steps(3)
        assert probe.queue  # a probe in progress
        probe.restart(clock[0])
        cost.update({2: 0.05})
        again = steps(2 * op._PROBE_STEPS + 1)
        assert again[: 2 * op._PROBE_STEPS] == [2] * op._PROBE_STEPS + [1] * op._PROBE_STEPS
        assert probe.chosen == 1
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("budget", ["time", "steps"])
def test_a_run_on_the_clock_probes_threads_and_restores_their_number(budget, monkeypatch):
    import ebv_gen.optimize as op

    made = []
    real = op._ThreadProbe

    def recording(threads):
        made.append(threads)
        return real(threads)

    monkeypatch.setattr(op, "_ThreadProbe", recording)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Z0 = random_start(128, 40, 6, generator=torch.Generator().manual_seed(0))  # 1.2e6 a step
        kw = {"time_budget": 60.0} if budget == "time" else {}
        res = minimize_coherence(Z0, steps=3 * op._PROBE_STEPS, **kw)
        assert res.steps == 3 * op._PROBE_STEPS
        assert torch.get_num_threads() == 2
        # a run on a step budget keeps its threads: its result depends on the seed alone
        assert made == ([2] if budget == "time" else [])
    finally:
        torch.set_num_threads(old)
