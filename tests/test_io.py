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
