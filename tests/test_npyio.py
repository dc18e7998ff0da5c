"""Safe .npy loading (never unpickles, clear errors) and atomic writes."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from grassmann import npyio
from grassmann.npyio import InvalidContentError, UnusableFileError


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).standard_normal((n, d))
    return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("stored", "loaded"),
    [(np.float64, torch.float64), (np.float32, torch.float32), (np.float16, torch.float32)],
)
def test_load_vectors_round_trips_in_its_working_precision(tmp_path, stored, loaded):
    w = unit_rows(7, 3).astype(np.float64)
    w = (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(stored)
    path = tmp_path / "v.npy"
    npyio.save_npy_atomic(path, w)
    got = npyio.load_vectors(path, atol=1e-3)
    assert got.dtype == loaded and got.shape == (7, 3)
    np.testing.assert_array_equal(got.numpy(), w.astype(got.numpy().dtype))


def test_save_npy_atomic_accepts_tensor_and_keeps_the_exact_name(tmp_path):
    path = tmp_path / "vectors.bin"
    npyio.save_npy_atomic(path, torch.ones(2, 2))
    assert path.exists() and not (tmp_path / "vectors.bin.npy").exists()
    np.testing.assert_array_equal(np.load(path), np.ones((2, 2), np.float32))


def test_atomic_write_gives_plain_permissions_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    npyio.write_text_atomic(path, "hello")
    assert path.read_text() == "hello"
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "v.npy"
    npyio.save_npy_atomic(path, np.zeros(3))

    def explode(fh):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        npyio._atomic(path, explode)
    np.testing.assert_array_equal(np.load(path), np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "x"
    data = os.urandom(3_000_000)
    path.write_bytes(data)
    assert npyio.sha256_file(path, chunk_bytes=65536) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"this is not numpy"), "not a readable .npy"),
        (
            lambda p: p.write_bytes(_npy_bytes(unit_rows(50, 8))[:-37]),
            "truncated or corrupt: its header promises shape",
        ),
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "pickled"),
        (lambda p: np.save(p, np.ones((3, 2), dtype=np.int64)), "dtype int64"),
        (lambda p: np.save(p, np.ones((3, 2), dtype=np.complex64)), "dtype complex64"),
        (lambda p: np.save(p, np.ones((2, 3, 2), dtype=np.float32)), "3-D array"),
        (lambda p: np.save(p, np.ones(4, dtype=np.float32)), "1-D array"),
    ],
    ids=["missing", "directory", "garbage", "truncated", "pickled", "int", "complex", "3d", "1d"],
)
def test_load_vectors_rejects_unusable_files(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(UnusableFileError, match=message):
        npyio.load_vectors(path)


def test_pickled_payload_is_never_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(UnusableFileError, match="pickled"):
        npyio.load_vectors(path)
    assert not (tmp_path / "pwned").exists()
    assert pickle  # the payload above is built with pickle's protocol


def test_npz_archive_is_rejected(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, w=unit_rows(3, 2))
    with pytest.raises(UnusableFileError, match="npz"):
        npyio.load_vectors(path)


def test_non_unit_rows_are_invalid_content(tmp_path):
    w = unit_rows(5, 4)
    w[3] *= 1.01
    path = tmp_path / "w.npy"
    np.save(path, w)
    with pytest.raises(InvalidContentError, match="row 3 has norm 1.01"):
        npyio.load_vectors(path)
    assert npyio.load_vectors(path, atol=0.02).shape == (5, 4)


def test_non_finite_rows_are_invalid_content(tmp_path):
    w = unit_rows(5, 4)
    w[1, 2] = np.nan
    path = tmp_path / "w.npy"
    np.save(path, w)
    with pytest.raises(InvalidContentError, match="1 NaN or infinite"):
        npyio.load_vectors(path)


def test_errors_are_value_errors():
    assert issubclass(UnusableFileError, ValueError)
    assert issubclass(InvalidContentError, ValueError)


def test_load_bases_accepts_orthonormal_stack(tmp_path):
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 6, 2)))
    path = tmp_path / "b.npy"
    np.save(path, q)
    got = npyio.load_bases(path)
    assert got.dtype == torch.float64 and got.shape == (4, 6, 2)  # the file's precision
    np.save(path, q.astype(np.float32))
    assert npyio.load_bases(path).dtype == torch.float32


def test_load_bases_rejects_non_orthonormal_and_bad_shapes(tmp_path):
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 6, 2)))
    q[2, :, 1] += 0.01 * q[2, :, 0]
    path = tmp_path / "b.npy"
    np.save(path, q)
    with pytest.raises(InvalidContentError, match="basis 2"):
        npyio.load_bases(path)
    np.save(path, np.ones((3, 2, 4)))
    with pytest.raises(UnusableFileError, match="1 <= k <= n"):
        npyio.load_bases(path)
    np.save(path, unit_rows(3, 2))
    with pytest.raises(UnusableFileError, match="expected 3-D"):
        npyio.load_bases(path)


def test_path_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="path must be a str or os.PathLike, got int"):
        npyio.load_vectors(3)


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_header_promising_a_huge_array_is_unusable_without_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 10**5)}
        )
        fh.write(b"\0" * 64)
    with pytest.raises(UnusableFileError, match=r"header promises shape \(1000000000, 100000\)"):
        npyio.load_vectors(path)


def test_trailing_bytes_after_the_data_are_unusable(tmp_path):
    path = tmp_path / "long.npy"
    path.write_bytes(_npy_bytes(unit_rows(4, 3)) + b"junk")
    with pytest.raises(UnusableFileError, match="but 52 bytes follow"):
        npyio.load_vectors(path)


def test_big_endian_files_load_as_native_floats(tmp_path):
    w = unit_rows(6, 4).astype(">f4")
    path = tmp_path / "be.npy"
    np.save(path, w)
    got = npyio.load_vectors(path)
    np.testing.assert_array_equal(got.numpy(), w.astype("<f4"))
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 5, 2)))
    np.save(path, q.astype(">f8"))
    np.testing.assert_allclose(npyio.load_bases(path).numpy(), q, atol=1e-7)
