"""ebv_gen.search: rounds of batched starts, structured starts, determinism, resume."""

from __future__ import annotations

import math

import pytest
import torch

import grassmann
from ebv_gen.kernels import max_similarity
from ebv_gen.multistart import SUPERSET_EXTRA, SUPERSET_MAX_POINTS, drop_points
from ebv_gen.search import (
    MAX_ROUND_SIZE,
    MIN_ROUND_SIZE,
    REFINE_STEPS,
    multistart,
    round_size,
    round_steps,
)

ONE_ROUND = round_steps(14) + REFINE_STEPS


def run(seed: int = 0, **kw):
    kw.setdefault("restarts", 16)
    return multistart(14, 3, generator=torch.Generator().manual_seed(seed), **kw)


def test_same_seed_and_steps_give_the_same_bytes_other_seeds_differ():
    a, b, c = run(steps=2 * ONE_ROUND), run(steps=2 * ONE_ROUND), run(1, steps=2 * ONE_ROUND)
    assert a.Z.numpy().tobytes() == b.Z.numpy().tobytes()
    assert a.Z.numpy().tobytes() != c.Z.numpy().tobytes()
    assert a.rounds == 2 and a.starts == 32 and a.steps == 2 * ONE_ROUND
    assert 1 <= a.finishes <= 6
    assert [h[0] for h in a.history] == [ONE_ROUND, 2 * ONE_ROUND]
    assert a.history[1][2] <= a.history[0][2] and a.history[-1][2] == a.similarity


def test_the_best_is_finished_and_measured_exactly():
    res = run(steps=ONE_ROUND)
    Z = res.Z
    s = (Z @ Z.T) ** 2
    s.fill_diagonal_(-1)
    assert res.similarity == pytest.approx(float(s.max()), abs=1e-15)
    assert torch.allclose(Z.norm(dim=1), torch.ones(14, dtype=torch.float64), atol=1e-14)


def test_a_structured_start_can_win_and_is_named():
    # 19 lines in R^5: 19 of the 20 lines of the D5 roots give 1/2, which random starts miss
    roots = grassmann.frame_candidates(19, 5)[0]
    assert roots.name == "root_system(D5)"
    res = multistart(
        19,
        5,
        generator=torch.Generator().manual_seed(0),
        steps=round_steps(19) + REFINE_STEPS,
        restarts=8,
        structured=[(roots.name, roots.build())],
    )
    assert res.origin == "root_system(D5)"
    assert math.sqrt(res.similarity) == pytest.approx(0.5, abs=1e-12)


def test_small_packings_finish_three_restarts_a_round_larger_ones_one(monkeypatch):
    import ebv_gen.multistart as ms

    assert ms.finishes_per_round(ms.FINISH_SMALL_POINTS) == ms.FINISH_PER_ROUND_SMALL == 3
    assert ms.finishes_per_round(ms.FINISH_SMALL_POINTS + 1) == ms.FINISH_PER_ROUND == 1
    assert ms.finishes_per_round(4, block=2) == 1  # subspaces: one, whatever their size
    monkeypatch.setattr(ms, "_FINISH_REACH", math.inf)  # every picked restart is finished
    small = run(steps=ONE_ROUND)
    assert small.rounds == 1 and small.finishes == 3
    large = multistart(
        31, 4, generator=torch.Generator().manual_seed(0), restarts=8,
        steps=round_steps(31) + REFINE_STEPS,
    )  # fmt: skip
    assert large.rounds == 1 and large.finishes == 1


def test_restarts_the_refine_took_into_one_basin_are_finished_once(monkeypatch):
    import ebv_gen.multistart as ms

    real = ms.minimize_coherence

    def one_basin(Z, **kw):
        out = real(Z, **kw)
        if kw.get("lr") is not None:  # the refine: every picked restart ends in the first's basin
            out.restart_Z = out.restart_Z[:1].expand_as(out.restart_Z).clone()
            out.restart_similarity = [out.restart_similarity[0]] * len(out.restart_similarity)
        return out

    monkeypatch.setattr(ms, "minimize_coherence", one_basin)
    monkeypatch.setattr(ms, "_FINISH_REACH", math.inf)
    res = run(steps=2 * ONE_ROUND)
    assert res.rounds == 2 and res.finishes == 2  # one a round, not three


def test_a_search_that_reaches_its_target_finishes_nothing_more(monkeypatch):
    import ebv_gen.multistart as ms

    monkeypatch.setattr(ms, "_FINISH_REACH", math.inf)
    # random starts only: with this seed two orbit starts refine into one basin, whose
    # finish the round does not repeat
    monkeypatch.setattr(ms, "ORBIT_SHARE", 0.0)
    # 9 points on the sphere in R^5 reach the bound 0 (part of the orthoplex) in the first
    # finish; without the target the round finishes three restarts
    kw = {"mode": "sphere", "restarts": 16, "steps": round_steps(9) + REFINE_STEPS}
    free = multistart(9, 5, generator=torch.Generator().manual_seed(0), **kw)
    assert free.finishes == 3
    res = multistart(9, 5, generator=torch.Generator().manual_seed(0), target=0.0, **kw)
    assert res.similarity <= 1e-10 and res.finishes == 1


def test_subspaces_finish_one_restart_a_round():
    res = multistart(
        6, 4, block=2, generator=torch.Generator().manual_seed(0), restarts=8,
        steps=round_steps(6) + REFINE_STEPS,
    )  # fmt: skip
    assert res.rounds == 1 and res.finishes == 1


def test_a_short_step_budget_keeps_the_surrogates_best_unfinished():
    res = run(steps=40)
    assert res.steps == 40 and res.rounds == 1 and res.finishes == 0


def test_resume_from_a_round_checkpoint_gives_the_uninterrupted_result():
    whole = run(steps=3 * ONE_ROUND)
    saved = []
    stop_after_one = []

    def checkpoint(state):
        saved.append(state)
        stop_after_one.append(True)

    first = run(
        steps=3 * ONE_ROUND, checkpoint=checkpoint, should_stop=lambda: bool(stop_after_one)
    )
    assert first.interrupted and first.rounds == 1 and len(saved) == 1
    rest = run(steps=3 * ONE_ROUND, state=saved[0])
    assert rest.rounds == 3 and rest.steps == whole.steps
    assert rest.Z.numpy().tobytes() == whole.Z.numpy().tobytes()


def test_a_time_budget_ends_the_rounds():
    res = run(time_budget=1.0)
    assert res.rounds >= 1 and res.seconds < 1.0 + 3.0


def test_a_target_stops_the_search():
    res = run(steps=10 * ONE_ROUND, target=1.0)  # any packing has s <= 1
    assert res.rounds == 1


def test_rounds_grow_longer_and_narrower_with_the_packing():
    assert round_steps(10) == 300 and round_steps(40) == 1000 and round_steps(1000) == 2500
    assert round_size(14, 3) == MAX_ROUND_SIZE
    assert round_size(1000, 100) == MIN_ROUND_SIZE
    assert MIN_ROUND_SIZE < round_size(100, 8) < MAX_ROUND_SIZE
    assert round_size(50, 8, block=2) <= round_size(50, 8)


def test_neither_steps_nor_time_budget_is_an_error():
    with pytest.raises(ValueError, match="steps or time_budget"):
        run()


def test_the_tail_of_a_time_budget_finishes_the_best_packing_first(monkeypatch):
    import ebv_gen.multistart as ms

    calls = []
    real = ms.minimax_finish

    def recording(Z, **kw):
        out = real(Z, **kw)
        calls.append((kw["max_iter"], kw["time_budget"], out.start_similarity, out.similarity))
        return out

    monkeypatch.setattr(ms, "minimax_finish", recording)
    monkeypatch.setattr(ms, "FINISH_ITERATIONS", 1)  # the rounds' finishes stop short
    monkeypatch.setattr(ms, "_TAIL", math.inf)  # every later round counts as too short
    res = run(time_budget=2.0)
    tails = [c for c in calls if c[0] == ms._TAIL_ITERATIONS]
    assert tails, calls
    # it finishes the best packing of the rounds before it, with all the time that is left
    rounds = [c for c in calls if c[0] == 1]
    assert tails[0][2] == pytest.approx(min(c[3] for c in rounds[: calls.index(tails[0])]))
    assert tails[0][1] is not None and tails[0][1] <= 2.0
    assert res.similarity <= tails[0][3]
    # a step budget never takes that turn: its result depends on the seed alone
    calls.clear()
    run(steps=2 * ONE_ROUND)
    assert all(c[0] == 1 for c in calls)


def test_restarts_too_far_behind_for_a_finish_to_win_are_not_finished(monkeypatch):
    import ebv_gen.multistart as ms

    calls = []
    real = ms.minimax_finish

    def recording(Z, **kw):
        out = real(Z, **kw)
        calls.append((out.start_similarity, out.similarity))
        return out

    monkeypatch.setattr(ms, "minimax_finish", recording)
    monkeypatch.setattr(ms, "FINISH_PER_ROUND", 3)  # several candidates a round, to be skipped
    res = multistart(
        40, 6, generator=torch.Generator().manual_seed(0), steps=2 * (1000 + REFINE_STEPS),
        restarts=32,
    )  # fmt: skip
    assert 1 <= res.finishes == len(calls) < 2 * ms.FINISH_PER_ROUND
    # every finish started within reach of the best so far, the reach being the largest
    # decrease of the finishes before it
    best, reach = math.inf, 0.0
    for start, end in calls:
        assert not reach or start <= best + ms._FINISH_REACH * reach + 1e-12
        best, reach = min(best, end), max(reach, start - end)
    assert res.similarity <= best


def test_each_rank_of_a_small_problem_gets_its_own_seed_rank_0_and_large_ones_the_seed(
    monkeypatch,
):
    import ebv_gen.search as S

    assert S.search_seed(7, 26, 6) == 7  # one process
    seeds = {}
    for rank in range(4):
        monkeypatch.setattr(S, "_rank", lambda group, r=rank: r)
        seeds[rank] = S.search_seed(7, 26, 6, group=object())
        assert S.search_seed(7, 1000, 512, group=object()) == 7  # sharded: one start
        torch.Generator().manual_seed(seeds[rank])  # a valid torch seed
    assert seeds[0] == 7 and len(set(seeds.values())) == 4
    monkeypatch.setattr(S, "_rank", lambda group: 1)
    assert S.search_seed(7, 26, 6, group=object()) == seeds[1]  # deterministic
    assert S.search_seed(8, 26, 6, group=object()) != seeds[1]


def _max_sim(Z: torch.Tensor, mode: str = "lines") -> torch.Tensor:
    G = Z @ Z.transpose(-1, -2)
    S = G * G if mode == "lines" else G
    eye = torch.eye(Z.shape[-2], dtype=torch.bool)
    return S.masked_fill(eye, -math.inf).amax(dim=(-1, -2))


@pytest.mark.parametrize("mode", ["lines", "sphere"])
def test_drop_points_keeps_a_subset_of_rows_in_order_and_never_raises_the_maximum(mode):
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(5, 12, 4, generator=g, dtype=torch.float64)
    Z = Z / Z.norm(dim=-1, keepdim=True)
    out = drop_points(Z, 3, mode)
    assert out.shape == (5, 9, 4)
    for r in range(5):
        # each kept row is one of the input's, in the input's order
        idx = [int((Z[r] - row).abs().sum(dim=1).argmin()) for row in out[r]]
        assert idx == sorted(set(idx))
        assert torch.equal(out[r], Z[r, idx])
    assert (_max_sim(out, mode) <= _max_sim(Z, mode)).all()
    assert torch.equal(drop_points(Z, 0, mode), Z)


def test_drop_points_drops_the_point_of_the_closest_pair():
    # 6 lines of the icosahedron (coherence 1/sqrt 5) and a seventh close to the first: the
    # seventh or the first goes, and what is left is the icosahedron's coherence again
    phi = (1 + math.sqrt(5)) / 2
    ico = torch.tensor(
        [[0, 1, phi], [0, 1, -phi], [1, phi, 0], [1, -phi, 0], [phi, 0, 1], [phi, 0, -1]],
        dtype=torch.float64,
    )
    near = ico[0] + torch.tensor([0.05, 0.0, 0.0], dtype=torch.float64)
    Z = torch.cat([ico, near[None]])
    Z = (Z / Z.norm(dim=1, keepdim=True))[None]
    out = drop_points(Z, 1)
    assert math.sqrt(float(_max_sim(out)[0])) == pytest.approx(1 / math.sqrt(5), abs=1e-12)


def test_drop_points_refuses_a_count_out_of_range():
    Z = torch.eye(3, dtype=torch.float64)[None]
    with pytest.raises(ValueError, match=r"count must be in \[0, 3\) for packings of N = 3, got 3"):
        drop_points(Z, 3)


def test_the_subset_round_finds_33_lines_in_r7_from_the_36_line_frame():
    # Sloane's table: 3/7 for 33..36 lines in R^7 (a two-distance tight frame of 36 lines);
    # random starts of 33 end ~1e-2 above it, subsets of 36-line packings land on it
    assert SUPERSET_EXTRA == 3 and SUPERSET_MAX_POINTS >= 33
    res = multistart(
        33,
        7,
        generator=torch.Generator().manual_seed(0),
        steps=2 * (round_steps(33) + REFINE_STEPS),
        restarts=8,
    )
    assert res.origin == "subset of 36"
    assert math.sqrt(res.history[0][2]) > 3 / 7 + 1e-3  # the first round of random starts
    assert math.sqrt(res.similarity) == pytest.approx(3 / 7, abs=1e-9)


def test_with_a_time_budget_rounds_run_whole_schedules_and_the_last_has_fewer_starts(
    monkeypatch,
):
    # a clock that only the optimiser and the finish advance: 1e-4 s per start and step
    import types

    import ebv_gen.multistart as ms
    from ebv_gen.finish import FinishResult
    from ebv_gen.kernels import max_similarity

    clock = [0.0]
    explored = []
    monkeypatch.setattr(ms, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def optimiser(Z, *, steps, time_budget=None, lr=None, **kw):
        R = Z.shape[0]
        done = steps if time_budget is None else min(steps, int(time_budget / (R * 1e-4) + 1e-6))
        clock[0] += done * R * 1e-4
        if lr is None:  # an exploration (the refine is the sharper run, at its own rates)
            explored.append((R, done))
        Z = Z.double()
        return types.SimpleNamespace(
            restart_Z=Z, restart_similarity=max_similarity(Z).tolist(), steps=done,
            interrupted=False,
        )  # fmt: skip

    def finish(Z, *, time_budget=None, **kw):
        clock[0] += 0.05 if time_budget is None else min(0.05, time_budget)
        s = float(max_similarity(Z.unsqueeze(0))[0])
        return FinishResult(Z.double(), s, s, 1, 1, 0.05, "converged")

    monkeypatch.setattr(ms, "minimize_coherence", optimiser)
    monkeypatch.setattr(ms, "minimax_finish", finish)
    monkeypatch.setattr(ms, "FINISH_PER_ROUND_SMALL", 1)  # the rounds below count one finish
    res = run(time_budget=3.0)
    per_round = round_steps(14)
    # before, the explorations shrank to a third of what was left (a compressed schedule)
    assert all(done == per_round for _, done in explored), explored
    assert explored[-1][0] < 16 and res.rounds == 4  # one finish a round: 0.05 s
    assert clock[0] <= 3.0
    # a round that no longer fits at all is not started
    explored.clear()
    clock[0] = 0.0
    # (two rounds take 1.58 s; the 0.27 s left after a third's refine and finish would hold
    # less than the share of a whole exploration a last round needs, here set to 0.9)
    monkeypatch.setattr(ms, "_LAST_ROUND_MIN", 0.9)
    res = run(time_budget=2.0)
    assert all(done == per_round for _, done in explored), explored
    assert res.rounds == 2 and clock[0] <= 2.0


def test_with_a_time_budget_the_round_size_is_capped_so_a_whole_exploration_fits(monkeypatch):
    # a clock that only the optimiser's steps advance: 1e-4 s per start and step, so a whole
    # exploration of 16 starts takes per_round * 1.6e-3 s
    import types

    import ebv_gen.multistart as ms

    clock = [0.0]
    monkeypatch.setattr(ms, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    # (with narrowing, the timed cost is scaled by _narrowed_cost: tested below)
    monkeypatch.setattr(ms, "EXPLORE_NARROW", ())

    class Timed(ms.CoherenceAdam):
        def step(self, progress, poll=None):
            clock[0] += self.state["Z"].shape[0] * 1e-4
            return super().step(progress, poll)

    monkeypatch.setattr(ms, "CoherenceAdam", Timed)
    per_round = round_steps(14)
    whole = per_round * 16 * 1e-4
    # (budget, size): a third of the budget holds 1.1, 0.55 and 0.2 whole explorations
    for budget, expected in ((3.3 * whole, 16), (1.65 * whole, 8), (0.6 * whole, 4)):
        clock[0] = 0.0
        size = ms._calibrated_size(16, budget / 3, per_round, 14, 3, 1, "lines", "cpu", 2048)
        assert size == expected
    assert ms.MIN_ROUND_SIZE == 4  # the last: no fewer, though even those do not fit
    # the search runs its first round with the capped size (a step budget keeps it)
    seen = []
    real = ms.minimize_coherence

    def recording(Z, **kw):
        seen.append(Z.shape[0])
        clock[0] += 10 * whole  # the search's clock runs out after this round
        return real(Z, **{**kw, "steps": 5})

    monkeypatch.setattr(ms, "minimize_coherence", recording)
    clock[0] = 0.0
    run(time_budget=1.65 * whole)
    assert seen[0] == 8
    seen.clear()
    run(steps=ONE_ROUND)
    assert seen[0] == 16


def test_the_cost_of_a_narrowed_exploration_is_between_its_linear_share_and_one():
    import ebv_gen.multistart as ms

    assert ms._narrowed_cost(()) == 1.0
    # half the schedule at the full batch, the rest at half: 0.75 linear, (1 + 0.75) / 2 in all
    assert math.isclose(ms._narrowed_cost([(0.5, 0.5)]), 0.875)
    narrow = ((0.5, 0.5), (0.7, 0.5), (0.85, 0.5))
    linear = 0.5 + 0.2 * 0.5 + 0.15 * 0.25 + 0.15 * 0.125
    assert math.isclose(ms._narrowed_cost(narrow), (1 + linear) / 2)


def test_explorations_narrow_only_when_asked_and_the_result_stays_exact(monkeypatch):
    import ebv_gen.multistart as ms

    seen, real = [], ms.minimize_coherence

    def optimiser(Z, **kw):
        if kw.get("lr") is None:  # the exploration
            seen.append(kw.get("narrow"))
        return real(Z, **kw)

    monkeypatch.setattr(ms, "minimize_coherence", optimiser)
    run(steps=ONE_ROUND)
    assert seen == [()]  # off by default
    monkeypatch.setattr(ms, "EXPLORE_NARROW", ((0.5, 0.5),))
    res = run(steps=ONE_ROUND)
    assert seen[1:] == [((0.5, 0.5),)]
    s = (res.Z @ res.Z.T) ** 2
    s.fill_diagonal_(-1)
    assert res.similarity == pytest.approx(float(s.max()), abs=1e-15)


def test_start_sharpness_spreads_every_run_of_starts_over_two_decades_about_its_centre():
    from ebv_gen.multistart import EXPLORE_BETA_CENTRE, start_sharpness

    for dim, centre in ((2, 10**1.5 * EXPLORE_BETA_CENTRE), (3, 10 * EXPLORE_BETA_CENTRE),
                        (4, 10**0.5 * EXPLORE_BETA_CENTRE)):  # fmt: skip
        b = start_sharpness(200, dim)
        assert b.shape == (200,) and b.dtype == torch.float64
        assert bool(torch.all((b >= centre / 10) & (b <= centre * 10)))
        # log-even: the geometric mean is the centre, and any 5 consecutive starts span most
        # of the two decades (a golden-ratio sequence)
        assert math.isclose(float(b.log().mean().exp()), centre, rel_tol=0.05)
        for i in range(0, 195, 7):
            run_ = b[i : i + 5].log10()
            assert float(run_.max() - run_.min()) > 1.0
    assert start_sharpness(0, 3).shape == (0,)
    # from R^5 on, every start has the optimiser's default
    for dim in (5, 8, 512):
        b = start_sharpness(7, dim)
        assert b.dtype == torch.float64 and b.tolist() == [EXPLORE_BETA_CENTRE] * 7


def test_each_exploration_start_gets_its_own_starting_sharpness(monkeypatch):
    import types

    import ebv_gen.multistart as ms
    from ebv_gen.kernels import max_similarity

    seen = []

    def optimiser(Z, *, steps, beta=None, lr=None, **kw):
        if lr is None:  # the exploration
            seen.append(beta)
        Z = Z.double()
        return types.SimpleNamespace(
            restart_Z=Z, restart_similarity=max_similarity(Z).tolist(), steps=steps,
            interrupted=False,
        )  # fmt: skip

    monkeypatch.setattr(ms, "minimize_coherence", optimiser)
    run(steps=ONE_ROUND)
    ((start, end),) = seen
    torch.testing.assert_close(start, ms.start_sharpness(16, 3))
    assert end == ms.EXPLORE_BETA_END


def test_orbit_starts_take_their_share_of_the_fresh_starts_the_orders_in_turn(monkeypatch):
    from ebv_gen import multistart as ms

    monkeypatch.setattr(ms, "ORBIT_SHARE", 0.5)
    monkeypatch.setattr(ms, "ORBIT_FIRST_ROUND", 1)
    monkeypatch.setattr(ms, "ORBIT_ORDERS", (3, 4, 5, 6))
    gen = torch.Generator().manual_seed(0)
    groups = ms._orbit_starts(21, 11, 6, 1, 1, gen)
    # 10 orbit starts; orders 6 (two orbits need 12 points) left out, the others in turn
    assert [(name, len(Z)) for name, Z in groups] == [
        ("orbit of order 3", 4),
        ("orbit of order 4", 3),
        ("orbit of order 5", 3),
    ]
    assert all(Z.shape[1:] == (11, 6) for _, Z in groups)
    assert ms._orbit_starts(21, 11, 6, 1, 0, gen) == []  # before ORBIT_FIRST_ROUND
    assert ms._orbit_starts(21, 11, 6, 2, 1, gen) == []  # subspaces: none
    assert ms._orbit_starts(21, 5, 6, 1, 1, gen) == []  # no order leaves two orbits


def test_a_search_with_orbit_starts_is_seeded_and_exact(monkeypatch):
    from ebv_gen import multistart as ms

    monkeypatch.setattr(ms, "ORBIT_SHARE", 1.0)
    a = multistart(20, 4, generator=torch.Generator().manual_seed(0), steps=ONE_ROUND, restarts=8)
    b = multistart(20, 4, generator=torch.Generator().manual_seed(0), steps=ONE_ROUND, restarts=8)
    assert a.Z.numpy().tobytes() == b.Z.numpy().tobytes()
    assert a.origin.startswith("orbit of order")
    assert a.similarity == pytest.approx(float(max_similarity(a.Z)), abs=1e-15)
