"""ebv_gen.io: safe loading with sidecar checks, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ebv_gen
from ebv_gen.io import (
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_vectors,
    sidecar_path,
)
from grassmann.npyio import InvalidContentError, UnusableFileError


def _unit(n=6, d=4, seed=0):
    g = np.random.default_rng(seed).standard_normal((n, d))
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)


def test_paths():
    assert str(sidecar_path("a/b.npy")) == "a/b.json"
    assert str(checkpoint_path("a/b.npy")) == "a/b.ckpt.pt"


def test_load_valid_with_and_without_sidecar(tmp_path):
    v = torch.from_numpy(_unit())
    p = tmp_path / "v.npy"
    save_vectors(p, v, {"num": 6, "dim": 4})
    assert torch.equal(ebv_gen.load(p), v)
    q = tmp_path / "plain.npy"
    np.save(q, _unit())
    assert ebv_gen.load(q).shape == (6, 4)


def test_load_rejects_tampered_file_and_shape_mismatch(tmp_path):
    p = tmp_path / "v.npy"
    save_vectors(p, torch.from_numpy(_unit()), {})
    other = _unit(seed=1)
    np.save(p, other)  # same shape, different bytes
    with pytest.raises(InvalidContentError, match="sha256"):
        ebv_gen.load(p)
    side = json.loads(sidecar_path(p).read_text())
    side["shape"] = [7, 4]
    sidecar_path(p).write_text(json.dumps(side))
    with pytest.raises(InvalidContentError, match="shape"):
        ebv_gen.load(p)


@pytest.mark.parametrize("kind", ["truncated", "pickled", "int", "3d", "missing", "text"])
def test_load_unusable_files(tmp_path, kind):
    p = tmp_path / "bad.npy"
    if kind == "truncated":
        np.save(p, _unit(100, 8))
        p.write_bytes(p.read_bytes()[:-100])
    elif kind == "pickled":
        np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "int":
        np.save(p, np.ones((3, 3), dtype=np.int64))
    elif kind == "3d":
        np.save(p, np.ones((2, 3, 3), dtype=np.float32))
    elif kind == "text":
        p.write_text("hello")
    with pytest.raises(UnusableFileError):
        ebv_gen.load(p)


def test_load_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("unpickled!",))

    p = tmp_path / "evil.npy"
    arr = np.empty(1, dtype=object)
    arr[0] = Boom()
    np.save(p, arr, allow_pickle=True)
    with pytest.raises(UnusableFileError, match="pickled"):
        ebv_gen.load(p)


@pytest.mark.parametrize("kind", ["nan", "nonunit"])
def test_load_invalid_content(tmp_path, kind):
    v = _unit()
    if kind == "nan":
        v[2, 1] = np.nan
    else:
        v[3] *= 1.01
    p = tmp_path / "v.npy"
    np.save(p, v)
    with pytest.raises(InvalidContentError):
        ebv_gen.load(p)


def test_checkpoint_roundtrip_and_garbage(tmp_path):
    p = tmp_path / "x.ckpt.pt"
    state = {"meta": {"num": 3}, "state": {"Z": torch.ones(2, 3), "best": [0.5], "step": 4}}
    save_checkpoint(p, state)
    back = load_checkpoint(p)
    assert back["meta"] == {"num": 3} and torch.equal(back["state"]["Z"], torch.ones(2, 3))
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(UnusableFileError):
        load_checkpoint(p)
    with pytest.raises(UnusableFileError):
        load_checkpoint(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- issue 14


def test_load_of_a_missing_file_is_a_file_not_found_error(tmp_path):
    from grassmann.npyio import MissingFileError

    with pytest.raises(FileNotFoundError, match="no such file"):
        ebv_gen.load(tmp_path / "absent.npy")
    with pytest.raises(ValueError):  # still an UnusableFileError for existing callers
        ebv_gen.load(tmp_path / "absent.npy")
    assert issubclass(MissingFileError, UnusableFileError)


def test_save_refuses_an_existing_file_unless_overwrite(tmp_path):
    res = ebv_gen.generate(6, 3, method="construction")
    p = tmp_path / "v.npy"
    res.save(p)
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        res.save(p)
    assert p.read_bytes() == before
    res.save(p, overwrite=True)
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        res.save(p, overwrite="yes")


def test_sidecar_dtype_is_the_dtype_of_the_file(tmp_path):
    for dtype, want in ((torch.float32, "float32"), (torch.float64, "float64")):
        p = tmp_path / f"{want}.npy"
        save_vectors(p, torch.from_numpy(_unit()).to(dtype), {})
        assert np.load(p).dtype == np.dtype(want)
        assert json.loads(sidecar_path(p).read_text())["dtype"] == want


def test_vector_and_subspace_sidecars_share_key_names(tmp_path):
    from ebv_gen.sidecar import HISTORY_KEYS, SCHEMA_VERSION

    vec = ebv_gen.generate(20, 4, steps=30)
    sub = ebv_gen.generate_subspaces(6, 4, 2, steps=30)
    sides = {}
    for name, res in (("vectors", vec), ("subspaces", sub)):
        p = tmp_path / f"{name}.npy"
        res.save(p)
        sides[name] = json.loads(sidecar_path(p).read_text())
    common = {
        "schema_version", "kind", "num", "bound", "bound_name", "gap", "ratio",
        "min_angle_rad", "min_angle_deg", "seed", "device", "steps", "seconds",
        "interrupted", "version", "history", "sha256", "shape", "dtype",
    }  # fmt: skip
    for kind, side in sides.items():
        assert common <= set(side), common - set(side)
        assert side["schema_version"] == SCHEMA_VERSION and side["kind"] == kind
        assert "lower_bound" not in side and "min_angle" not in side
        assert side["min_angle_deg"] == pytest.approx(np.degrees(side["min_angle_rad"]))
        assert side["history"] and all(
            set(h) == {"step", "seconds", HISTORY_KEYS[kind]} for h in side["history"]
        )
    v = sides["vectors"]
    assert v["min_angle_rad"] == pytest.approx(np.arccos(v["coherence"]))


def test_version_1_sidecars_are_still_read(tmp_path):
    from ebv_gen.io import read_sidecar

    p = tmp_path / "old.npy"
    save_vectors(p, torch.from_numpy(_unit()), {})
    side = json.loads(sidecar_path(p).read_text())
    del side["schema_version"]
    side.update(coherence=0.5, lower_bound=0.4, lower_bound_name="welch", history=[[1, 0.1, 0.6]])
    sidecar_path(p).write_text(json.dumps(side))
    got = read_sidecar(p)
    assert got["schema_version"] == 2 and got["kind"] == "vectors"
    assert (got["bound"], got["bound_name"]) == (0.4, "welch") and "lower_bound" not in got
    assert got["history"] == [{"step": 1, "seconds": 0.1, "coherence": 0.6}]
    q = tmp_path / "oldsub.npy"
    save_vectors(q, torch.eye(4)[None, :, :2].repeat(2, 1, 1), {})
    side = json.loads(sidecar_path(q).read_text())
    del side["schema_version"]
    side.update(kind="subspaces", min_angle=0.5, bound=1.0, history=[[3, 0.2, 0.9]])
    sidecar_path(q).write_text(json.dumps(side))
    got = read_sidecar(q)
    assert got["min_angle_rad"] == 0.5 and got["min_angle_deg"] == pytest.approx(28.6478897)
    assert got["history"] == [{"step": 3, "seconds": 0.2, "min_distance": 0.9}]
    side["schema_version"] = 99
    sidecar_path(q).write_text(json.dumps(side))
    with pytest.raises(UnusableFileError, match="schema_version 99 is newer"):
        read_sidecar(q)


def test_gitignore_covers_the_files_the_readme_command_writes():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names = ["ebv_100x32.npy", "ebv_100x32.json", "ebv_100x32.ckpt.pt", "fig.png"]
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *names], cwd=root, capture_output=True, text=True
    )
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    assert done.stdout.split() == names


def test_a_rank_that_cannot_resume_leaves_no_cycle_holding_its_group(tmp_path, monkeypatch):
    # the refusing rank's exception must not keep the frames that hold the process group
    # alive after it is handled: collected at interpreter exit, gloo's destructor may abort
    import gc
    import weakref

    import torch.distributed as dist

    from ebv_gen.checkpoints import resume_checkpoint, search_path
    from ebv_gen.io import save_checkpoint

    class Group:  # stands for the process group (rank 1 of 2)
        pass

    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(
        dist,
        "all_gather_object",
        lambda out, obj, group=None: out.__setitem__(slice(None), [None, obj]),
    )
    path = tmp_path / "run.ckpt.pt"
    save_checkpoint(search_path(path, 1, 2), {"meta": {"seed": 99}, "state": {}})
    group = Group()
    alive = weakref.ref(group)
    enabled = gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ValueError, match="seed=99"):
            resume_checkpoint(path, {"seed": 3}, ["seed"], group=group)
        del group
        assert alive() is None  # freed at once, not by the collector
    finally:
        if enabled:
            gc.enable()
