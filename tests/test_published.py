"""``ebv-gen import``: the published EBV pickles, read without running their code."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch._utils
import torch.storage

from ebv_gen.cli import main
from ebv_gen.published import RefusedPickleError, import_published, read_tensor_file
from grassmann import EBVHead
from grassmann.npyio import InvalidContentError, UnusableFileError


def _unit_rows(num: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num, dim, generator=g)
    return w / w.norm(dim=1, keepdim=True)


def _legacy_storage_blob(tensor: torch.Tensor, location: str) -> bytes:
    """``torch.save(storage)`` in the legacy layout, with the storage tagged ``location``.

    A CUDA tag is faked on a CPU-only machine by rewriting the location string of the pickle
    stream (protocol 2 has no frame lengths, so the byte replacement is exact)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what pickle saves
        warnings.simplefilter("ignore", UserWarning)
        storage = tensor.contiguous().storage()
    torch.save(storage, buf, _use_new_zipfile_serialization=False)
    blob = buf.getvalue()
    cpu = b"X\x03\x00\x00\x00cpu"
    assert blob.count(cpu) == 1
    tag = location.encode()
    return blob.replace(cpu, b"X" + len(tag).to_bytes(4, "little") + tag)


class _Storage:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


class _PublishedTensor:
    """Pickles exactly as ``pickle.dump(cuda_tensor)`` does (the published ``eq_{d}_{N}.pkl``):
    ``_rebuild_tensor_v2(_load_from_bytes(<legacy torch.save of the storage>), 0, size, stride,
    False, OrderedDict())``."""

    def __init__(self, tensor: torch.Tensor, location: str = "cuda:0") -> None:
        self.tensor, self.location = tensor.contiguous(), location

    def __reduce__(self):
        t = self.tensor
        storage = _Storage(_legacy_storage_blob(t, self.location))
        return (
            torch._utils._rebuild_tensor_v2,
            (storage, 0, tuple(t.shape), t.stride(), False, OrderedDict()),
        )


def _write_published(path, tensor, location="cuda:0") -> None:
    path.write_bytes(pickle.dumps(_PublishedTensor(tensor, location), protocol=4))


def test_the_published_layout_needs_cuda_for_pickle_and_imports_without(tmp_path, capsys):
    w = _unit_rows(40, 16)
    src = tmp_path / "eq_16_40.pkl"
    _write_published(src, w)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what a CPU-only user meets
            pickle.loads(src.read_bytes())
    assert main(["import", str(src), "-o", str(tmp_path / "ebv.npy")]) == 0
    line = capsys.readouterr().out
    assert "imported eq_16_40.pkl (pickle, float32 on cuda:0): 40 x 16 unit vectors" in line
    np.testing.assert_array_equal(np.load(tmp_path / "ebv.npy"), w.numpy())
    report = json.loads((tmp_path / "ebv.json").read_text())
    assert report["method"] == "import" and report["mode"] == "lines"
    assert report["source"]["location"] == "cuda:0" and report["source"]["name_agrees"] is True
    assert report["shape"] == [40, 16]
    # verify and the heads take it like a generated file
    assert main(["verify", str(tmp_path / "ebv.npy")]) == 0
    assert "valid:" in capsys.readouterr().out
    head = EBVHead(tmp_path / "ebv.npy")
    torch.testing.assert_close(head.vectors, w)


@pytest.mark.parametrize("layout", ["zip", "legacy", "parameter", "view"])
def test_torch_save_layouts_and_parameters_read_exactly(tmp_path, layout):
    w = _unit_rows(7, 5, seed=1).double()
    path = tmp_path / "w.pt"
    if layout == "zip":
        torch.save(w, path)
    elif layout == "legacy":
        torch.save(w, path, _use_new_zipfile_serialization=False)
    elif layout == "parameter":
        path.write_bytes(pickle.dumps(torch.nn.Parameter(w)))
    else:  # a transposed view into a larger storage
        big = torch.zeros(20, 9, dtype=torch.float64)
        big[2:7, 1:8] = w.T
        torch.save(big[2:7, 1:8].T, path)
    matrix = read_tensor_file(path)
    np.testing.assert_array_equal(matrix.array, w.numpy())
    assert matrix.dtype == "float64" and matrix.location == "cpu"
    assert matrix.layout in ("pickle", "torch.save (zip)", "torch.save (legacy)")


def test_half_precision_storages_are_read(tmp_path):
    for dtype, name in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
        w = _unit_rows(6, 4).to(dtype)
        torch.save(w, tmp_path / f"{name}.pt")
        matrix = read_tensor_file(tmp_path / f"{name}.pt")
        assert matrix.dtype == name
        np.testing.assert_array_equal(matrix.array.astype(np.float32), w.float().numpy())


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _TensorWithPayload:
    """A tensor record whose storage argument runs a command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (
            torch._utils._rebuild_tensor_v2,
            (_Payload(self.marker), 0, (1,), (1,), False, OrderedDict()),
        )


def test_a_malicious_pickle_is_refused_with_one_line_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "eq_4_4.pkl"
    bad.write_bytes(pickle.dumps(_Payload(str(marker))))
    assert main(["import", str(bad), "-o", str(tmp_path / "out.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ebv-gen: error: ")
    assert "refused to load the global" in err and ("posix.system" in err or "os.system" in err)
    assert not marker.exists() and not (tmp_path / "out.npy").exists()
    # hidden inside a tensor's storage record
    nested = tmp_path / "nested.pkl"
    nested.write_bytes(pickle.dumps(_TensorWithPayload(str(marker))))
    with pytest.raises(RefusedPickleError, match="refused to load the global"):
        read_tensor_file(nested)
    # or in the data.pkl of a torch.save archive
    archive = tmp_path / "archive.pt"
    torch.save(_unit_rows(2, 2), archive)
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = pickle.dumps(_Payload(str(marker)), protocol=2)
    with zipfile.ZipFile(archive, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(RefusedPickleError, match="refused to load the global"):
        read_tensor_file(archive)
    assert not marker.exists()


def test_bad_content_and_bad_files_give_one_line_and_exit_2(tmp_path, capsys):
    cases = {
        "long.pkl": (3.0 * _unit_rows(5, 4), "rows must be unit vectors"),
        "cube.pkl": (torch.randn(2, 3, 4), r"shape \(2, 3, 4\), expected a non-empty 2-D"),
    }
    for name, (tensor, match) in cases.items():
        _write_published(tmp_path / name, tensor)
        assert main(["import", str(tmp_path / name), "-o", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert re.search(match, err), err
    ints = tmp_path / "ints.pt"
    torch.save(torch.arange(6).reshape(2, 3), ints)
    with pytest.raises(RefusedPickleError, match="holds a LongStorage: class vectors must be"):
        read_tensor_file(ints)
    good = tmp_path / "eq_4_5.pkl"
    _write_published(good, _unit_rows(5, 4))
    (tmp_path / "cut.pkl").write_bytes(good.read_bytes()[:-200])
    with pytest.raises(UnusableFileError, match="not a readable pickle"):
        read_tensor_file(tmp_path / "cut.pkl")
    with pytest.raises(UnusableFileError, match="no such file"):
        read_tensor_file(tmp_path / "missing.pkl")
    with pytest.raises(InvalidContentError, match="NaN or infinite"):
        nan = _unit_rows(5, 4)
        nan[1, 1] = float("nan")
        _write_published(tmp_path / "nan.pkl", nan)
        import_published(tmp_path / "nan.pkl", tmp_path / "nan.npy")
    (tmp_path / "o.npy").write_bytes(b"")
    assert main(["import", str(good), "-o", str(tmp_path / "o.npy")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["import", str(good), "-o", str(tmp_path / "o.npy"), "--force"]) == 0
    renamed = tmp_path / "eq_5_4.pkl"  # d and N swapped in the name
    renamed.write_bytes(good.read_bytes())
    assert main(["import", str(renamed), "-o", str(tmp_path / "r.npy")]) == 0
    assert "does not match" in capsys.readouterr().out


class _Expanded:
    """A tensor record that declares a ``size`` far beyond its one-element storage (stride 0:
    every element is the same float), as ``torch.Tensor.expand`` would save it."""

    def __init__(self, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.size, self.stride = size, stride

    def __reduce__(self):
        storage = _Storage(_legacy_storage_blob(torch.ones(1), "cuda:0"))
        return (
            torch._utils._rebuild_tensor_v2,
            (storage, 0, self.size, self.stride, False, OrderedDict()),
        )


def test_a_tensor_larger_than_its_storage_is_refused_before_anything_is_allocated(tmp_path):
    """A 100-byte file must not make the import allocate gigabytes: (20000, 20000) with stride 0
    used to be materialised (1.6 GB, then float64 copies) before the unit-row check failed."""
    path = tmp_path / "expanded.pkl"
    path.write_bytes(pickle.dumps(_Expanded((2000, 2000), (0, 0)), protocol=4))
    with pytest.raises(UnusableFileError, match="4000000 elements from a storage of 1"):
        read_tensor_file(path)
    # an empty tensor with an absurd dimension: a clean message, not numpy's "array is too big"
    path.write_bytes(pickle.dumps(_Expanded((0, 2**62), (1, 1)), protocol=4))
    with pytest.raises(UnusableFileError, match=r"expanded.pkl.*impossible size"):
        read_tensor_file(path)
    # an ordinary empty tensor still reads (and is refused by the import for being empty)
    torch.save(torch.empty(0, 5), tmp_path / "empty.pt")
    assert read_tensor_file(tmp_path / "empty.pt").array.shape == (0, 5)


def test_a_truncated_or_corrupt_archive_and_absurd_lengths_give_one_line(tmp_path, capsys):
    archive = tmp_path / "w.pt"
    torch.save(_unit_rows(50, 8), archive)
    blob = archive.read_bytes()
    storage_at = blob.index(b"data/0") + 100  # inside the storage bytes of the archive
    corrupt = blob[:storage_at] + bytes(16) + blob[storage_at + 16 :]
    huge_bytes = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc"  # BINBYTES8
    for name, data, match in (
        ("truncated.pt", blob[: len(blob) // 2], "not a readable torch.save archive"),
        ("corrupt.pt", corrupt, "not a readable torch.save archive"),
        ("huge.pkl", huge_bytes, "not a readable pickle"),
    ):
        (tmp_path / name).write_bytes(data)
        assert main(["import", str(tmp_path / name), "-o", str(tmp_path / "o.npy")]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ebv-gen: error: "), err
        assert name in err and match in err, err

    # a compressed member (torch.save never compresses) could declare gigabytes in kilobytes
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(UnusableFileError, match="is compressed"):
        read_tensor_file(tmp_path / "deflated.pt")


class _NestedStorage:
    """A storage record whose legacy blob holds another storage record instead of a storage."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def __reduce__(self):
        if self.depth == 0:
            return _Storage(_legacy_storage_blob(torch.ones(1), "cpu")).__reduce__()
        inner = io.BytesIO()
        pickler = pickle.Pickler(inner, protocol=4)
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickler.dump(obj)
        pickler.dump(_NestedStorage(self.depth - 1))
        pickler.dump([])  # no storage keys
        return (torch.storage._load_from_bytes, (inner.getvalue(),))


def test_storage_records_nest_only_at_the_top_level_of_a_plain_pickle(tmp_path):
    """torch writes ``_load_from_bytes`` only in ``pickle.dump`` of a tensor, never inside the
    legacy stream it holds; nesting would let a file make the reader hold one copy of its bytes
    per level."""

    class Record:
        def __reduce__(self):
            return (
                torch._utils._rebuild_tensor_v2,
                (_NestedStorage(1), 0, (1,), (1,), False, OrderedDict()),
            )

    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps(Record(), protocol=4))
    with pytest.raises(RefusedPickleError, match="storage record inside a storage record"):
        read_tensor_file(path)


def test_text_from_the_file_is_bounded_in_messages_and_device_tags_are_checked(tmp_path, capsys):
    """Names, keys and tags come from the file: a megabyte key must not become a megabyte
    error line, and a device tag with a newline or escape codes must not reach the summary."""

    class Pickler(pickle.Pickler):
        def __init__(self, file, pid):
            super().__init__(file, protocol=4)
            self.pid = pid

        def persistent_id(self, obj):
            return self.pid if isinstance(obj, _Marker) else None

    class _Marker:
        pass

    for pid, match in (
        (("storage", "x" * 10**6, "0", "cpu", 1), "not a torch storage id: "),
        ((["storage"] * 10**5,), "not a torch storage id: "),
    ):
        archive = tmp_path / "a.pt"
        torch.save(_unit_rows(2, 2), archive)
        with zipfile.ZipFile(archive) as z:
            members = {n: z.read(n) for n in z.namelist()}
        data = io.BytesIO()
        Pickler(data, pid).dump(_Marker())
        members[next(n for n in members if n.endswith("data.pkl"))] = data.getvalue()
        with zipfile.ZipFile(archive, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
        assert main(["import", str(archive), "-o", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err and len(err) < 400, err[:300]
    # a real storage type with a bad tag: built by rewriting the tag of a published file
    w = _unit_rows(4, 3)
    path = tmp_path / "tag.pkl"
    _write_published(path, w, location="cuda:0\x1b[2J")
    with pytest.raises(UnusableFileError, match=r"not a device tag: 'cuda:0\\x1b\[2J'"):
        read_tensor_file(path)
    for tag in ("cpu", "cuda:0", "cuda:12", "mps", "xla:1"):
        _write_published(path, w, location=tag)
        assert read_tensor_file(path).location == tag


def test_half_precision_files_import_renormalised_and_verify(tmp_path, capsys):
    """float16 / bfloat16 rounding moves a unit row's norm by up to 5e-4 / 4e-3, beyond the
    1e-4 of the check: such files were read but never imported. They are checked within
    their precision and renormalised, so that verify accepts the float32 result."""
    w = _unit_rows(60, 32, seed=3)
    for dtype, name in ((torch.float16, "float16"), (torch.bfloat16, "bfloat16")):
        src, out = tmp_path / f"{name}.pt", tmp_path / f"{name}.npy"
        torch.save(w.to(dtype), src)
        assert main(["import", str(src), "-o", str(out)]) == 0
        assert f"(rows renormalised from {name})" in capsys.readouterr().out
        got = np.load(out)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got.astype(np.float64), axis=1), 1, atol=1e-6)
        np.testing.assert_allclose(got, w.numpy(), atol=torch.finfo(dtype).eps)
        assert json.loads(out.with_suffix(".json").read_text())["source"]["renormalised"] is True
        assert main(["verify", str(out)]) == 0
        capsys.readouterr()
        # rows far from unit are still refused
        torch.save((1.02 * w).to(dtype), src)
        with pytest.raises(InvalidContentError, match="rows must be unit vectors"):
            import_published(src, tmp_path / "far.npy")
    # float32 files are written as they are, never renormalised
    _write_published(tmp_path / "eq_32_60.pkl", w)
    import_published(tmp_path / "eq_32_60.pkl", tmp_path / "f32.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "f32.npy"), w.numpy())
    assert "renormalised" not in json.loads((tmp_path / "f32.json").read_text())["source"]


class _StatefulStorage(_Storage):
    def __init__(self, blob: bytes, state: dict) -> None:
        super().__init__(blob)
        self.state = state

    def __reduce__(self):
        return (*super().__reduce__(), self.state)


class _StatefulTensor(_PublishedTensor):
    def __init__(self, tensor: torch.Tensor, storage_state=None, tensor_state=None) -> None:
        super().__init__(tensor)
        self.storage_state, self.tensor_state = storage_state, tensor_state

    def __reduce__(self):
        rebuild, args = super().__reduce__()
        if self.storage_state is not None:
            args = (_StatefulStorage(args[0].blob, self.storage_state), *args[1:])
        return (rebuild, args) if self.tensor_state is None else (rebuild, args, self.tensor_state)


def test_a_pickle_cannot_overwrite_the_records_it_builds(tmp_path, capsys):
    """BUILD (a __reduce__ with a state) after an allowed call used to overwrite the fields
    of the record it returned: a storage's data or a tensor's storage set to an int gave an
    AttributeError traceback, its element count changed silently."""
    w = _unit_rows(4, 3)
    for storage_state, tensor_state in (
        ({"data": 5}, None),
        ({"numel": 10**12}, None),
        (None, {"storage": 3}),
        (None, {"size": "abc"}),
    ):
        path = tmp_path / "eq_3_4.pkl"
        path.write_bytes(pickle.dumps(_StatefulTensor(w, storage_state, tensor_state), 4))
        assert main(["import", str(path), "-o", str(tmp_path / "o.npy")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "sets the state of a" in err and "eq_3_4.pkl" in err
        assert not (tmp_path / "o.npy").exists()
