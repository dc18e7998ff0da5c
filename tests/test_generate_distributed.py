"""Generation on a gloo process group of 1, 2 and 3 CPU ranks: the same vectors as one process,
the same coherence, sharded checkpoints that resume after a rank is killed, clear refusals."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist

from ebv_gen import generate
from ebv_gen.io import save_checkpoint
from grassmann import coherence
from tests._spawn import init_gloo, spawn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo"),
]

#: A problem above the multi-start size (N d > 2048), so that its optimiser is sharded; small
#: tiles so that every rank has several.
CASE = {"num": 150, "dim": 16, "steps": 25, "seed": 3, "method": "lse", "tile": 32}


def _generate_worker(rank, world, port, out, kwargs, die_at):
    init_gloo(rank, world, port)
    try:
        kw = dict(kwargs)
        if die_at is not None and rank == world - 1:

            def callback(step, cur, best):
                if step == die_at:
                    os._exit(3)  # a killed rank: no clean-up, no message

            kw["callback"] = callback
        res = generate(group=dist.group.WORLD, device="cpu", **kw)
        np.save(os.path.join(out, f"rank{rank}.npy"), res.vectors.numpy())
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump({"coherence": res.coherence, "extra": res.extra, "steps": res.steps}, fh)
    except ValueError as err:
        with open(os.path.join(out, f"rank{rank}.err"), "w") as fh:
            fh.write(str(err))
        # every rank refuses together; leave together, or a rank still tearing down its
        # connections when its peer has gone may abort in gloo
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run(tmp_path, world, die_at=None, **kwargs):
    out = tmp_path / f"w{world}"
    out.mkdir(exist_ok=True)
    codes = spawn(_generate_worker, world, str(out), {**CASE, **kwargs}, die_at)
    return out, codes


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_give_the_single_process_vectors_and_coherence(tmp_path, world):
    single = generate(device="cpu", **CASE)
    out, codes = _run(tmp_path, world)
    assert codes == [0] * world
    vecs = [np.load(out / f"rank{r}.npy") for r in range(world)]
    for v in vecs[1:]:
        assert np.array_equal(v, vecs[0])  # every rank returns the same packing
    assert vecs[0].dtype == np.float64
    np.testing.assert_allclose(vecs[0], single.vectors.numpy(), rtol=0, atol=1e-9)
    report = json.loads((out / "rank0.json").read_text())
    assert report["extra"]["world_size"] == world and report["extra"]["backend"] == "gloo"
    assert report["steps"] == single.steps
    # the shared float64 verification is the single-process coherence of the same values
    assert report["coherence"] == coherence(torch.from_numpy(vecs[0]))


def _coherence_worker(rank, world, port, out, W):
    from ebv_gen.sharding import Shard

    init_gloo(rank, world, port)
    try:
        shard = Shard.create(W.shape[0], 1, 64, dist.group.WORLD)
        values = [shard.coherence(W, mode) for mode in ("lines", "sphere")]
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump(values, fh)
    finally:
        dist.destroy_process_group()


def test_distributed_coherence_equals_the_single_process_one_exactly(tmp_path):
    W = torch.randn(700, 24, generator=torch.Generator().manual_seed(1))  # float32: verified
    assert spawn(_coherence_worker, 3, str(tmp_path), W) == [0, 0, 0]
    expected = [coherence(W, mode=m) for m in ("lines", "sphere")]
    for r in range(3):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == expected


def test_resume_after_one_rank_is_killed_gives_the_uninterrupted_file(tmp_path):
    ckpt = tmp_path / "run.ckpt.pt"
    whole, codes = _run(tmp_path, 2)
    assert codes == [0, 0]
    opts = {"checkpoint_path": str(ckpt), "checkpoint_every": 1e-6}
    killed = tmp_path / "killed"
    killed.mkdir()
    codes = spawn(_generate_worker, 2, str(killed), {**CASE, **opts}, 12)
    assert codes[1] == 3 and ckpt.exists()
    manifest = torch.load(ckpt, weights_only=True)["manifest"]
    assert manifest["world"] == 2 and manifest["backend"] == "gloo" and manifest["step"] >= 10
    shards = sorted(p.name for p in tmp_path.glob("run.ckpt.pt.*"))
    assert shards == sorted(manifest["shards"])  # older shards were removed
    with pytest.raises(ValueError, match="written by 2 ranks, this run has 1"):
        generate(device="cpu", resume=True, **opts, **CASE)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    codes = spawn(_generate_worker, 2, str(resumed), {**CASE, **opts, "resume": True}, None)
    assert codes == [0, 0]
    report = json.loads((resumed / "rank0.json").read_text())
    assert report["extra"]["resumed_from_step"] == manifest["step"]
    assert np.array_equal(np.load(resumed / "rank0.npy"), np.load(whole / "rank0.npy"))
    assert not ckpt.exists() and not list(tmp_path.glob("run.ckpt.pt.*"))


def test_a_world_larger_than_the_packing_and_mismatched_arguments_are_refused(tmp_path):
    out = tmp_path / "small"
    out.mkdir()
    assert spawn(_generate_worker, 3, str(out), {"num": 2, "dim": 3}, None) == [0, 0, 0]
    assert "3 ranks but the packing only 2 points" in (out / "rank0.err").read_text()
    out = tmp_path / "mismatch"
    out.mkdir()
    codes = spawn(_mismatch_worker, 2, str(out))
    assert codes == [0, 0]
    for r in range(2):
        assert "different arguments on ranks [1]" in (out / f"rank{r}.err").read_text()


def _mismatch_worker(rank, world, port, out):
    _generate_worker(rank, world, port, out, {**CASE, "seed": rank}, None)


def test_torchrun_launches_the_command_line_on_two_ranks(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "t.npy"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "ebv_gen", "generate", "150", "16", "-o", str(out), "--device", "cpu",
        "--steps", "25", "--seed", "3", "--method", "lse", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["world_size"] == 2 and side["backend"] == "gloo"
    single = generate(device="cpu", **{**CASE, "tile": None})
    np.testing.assert_allclose(np.load(out), single.vectors.numpy(), rtol=0, atol=1e-9)
    assert done.stdout.count("-> ") == 1  # only rank 0 reports (and writes)


#: A small problem (the multi-start search): every rank searches starts of its own. Three
#: rounds, so that a rank can be killed between two of its checkpoints.
SMALL = {"num": 26, "dim": 6, "steps": 3 * (600 + 1000), "seed": 0, "method": "lse"}


def test_the_ranks_of_a_small_problem_search_their_own_starts_and_return_the_best(tmp_path):
    from ebv_gen.search import REFINE_STEPS, round_steps

    assert SMALL["steps"] == 3 * (round_steps(26) + REFINE_STEPS)
    single = generate(device="cpu", **SMALL)
    out, codes = _run(tmp_path, 2, **{**SMALL, "tile": None})
    assert codes == [0, 0]
    vecs = [np.load(out / f"rank{r}.npy") for r in range(2)]
    assert np.array_equal(vecs[0], vecs[1])
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0] == reports[1]
    search = reports[0]["extra"]["search"]
    assert search["ranks"] == 2 and search["best_rank"] in (0, 1)
    assert search["starts"] == 2 * single.extra["search"]["starts"]
    assert search["rounds"] == 2 * single.extra["search"]["rounds"] == 6
    # rank 0 searches what one process does: the best of the ranks is never worse
    assert reports[0]["coherence"] <= single.coherence
    if search["best_rank"] == 0:
        assert np.array_equal(vecs[0], single.vectors.numpy())
    assert reports[0]["coherence"] == coherence(torch.from_numpy(vecs[0]))


def test_a_rank_of_a_small_problem_killed_resumes_its_own_search(tmp_path):
    ckpt = tmp_path / "run.ckpt.pt"
    small = {**SMALL, "tile": None}
    whole, codes = _run(tmp_path, 2, **small)
    assert codes == [0, 0]
    opts = {"checkpoint_path": str(ckpt)}
    killed = tmp_path / "killed"
    killed.mkdir()
    # rank 1 dies after its second round, before that round's checkpoint: its file holds the
    # first; rank 0 completes its search and then fails on the missing rank
    codes = spawn(_generate_worker, 2, str(killed), {**small, **opts}, 2 * 1600)
    assert codes[1] == 3 and codes[0] != 0
    own = tmp_path / "run.ckpt.pt.search.rank1-of-2"
    assert ckpt.exists() and own.exists()
    assert torch.load(own, weights_only=False)["state"]["rounds"] == 1
    assert torch.load(ckpt, weights_only=False)["state"]["rounds"] == 3
    stale = dict(torch.load(own, weights_only=False))
    other = tmp_path / "run.ckpt.pt.search.rank2-of-3"  # left by a run on 3 ranks
    other.write_bytes(own.read_bytes())
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    codes = spawn(_generate_worker, 2, str(resumed), {**small, **opts, "resume": True}, None)
    assert codes == [0, 0]
    assert np.array_equal(np.load(resumed / "rank0.npy"), np.load(whole / "rank0.npy"))
    reports = [json.loads((resumed / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0] == reports[1]  # the same report on every rank
    assert reports[0]["extra"]["resumed_from_step"] == 3 * 1600  # rank 0's, whole
    assert reports[0]["extra"]["search"]["resumed_from_steps"] == [3 * 1600, 1600]
    assert not ckpt.exists() and not own.exists() and not other.exists()

    # a rank's file left by another run (seed 99) and no file of rank 0: every rank refuses
    # (none waits for the failed one in a collective)
    save_checkpoint(own, {**stale, "meta": {**stale["meta"], "seed": 99}})
    refused = tmp_path / "refused"
    refused.mkdir()
    codes = spawn(_generate_worker, 2, str(refused), {**small, **opts, "resume": True}, None)
    assert codes == [0, 0]
    assert "seed=99" in (refused / "rank1.err").read_text()
    assert "rank 1 cannot resume" in (refused / "rank0.err").read_text()
